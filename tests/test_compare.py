"""The Compare core: budgeted runs, the collector, the summary table, principal angles, labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explorer import problems
from explorer.analysis.compare import (
    CompareSettings,
    ComparisonCollector,
    MatvecBudget,
    RunConfig,
    angle_frame,
    check_configs,
    error_series,
    first_reaching,
    principal_angles,
    run_comparison,
    summary_frame,
    wanted_reference,
)
from explorer.solvers import solve
from explorer.tracking import NullTracker, StopSolve

LOBPCG_PAIR = [RunConfig("lobpcg", {"method": "basic"}), RunConfig("lobpcg", {"method": "ortho"})]

@pytest.fixture(autouse=True)
def _one_torch_thread():  # noqa: ANN202
    """One intra-op thread: on a loaded 2-core box two OpenMP threads slow small ops ~30x (../shared/LIVE.md 2.4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



@pytest.fixture(scope="module")
def laplacian():  # noqa: ANN201
    return problems.laplacian_2d(12)


def test_budget_stops_every_run_and_the_table_reports_it(laplacian) -> None:  # noqa: ANN001
    settings = CompareSettings(k=3, which="SA", tol=1e-12, budget=60, seed=0)
    outcomes = run_comparison(laplacian, LOBPCG_PAIR, settings)
    for outcome in outcomes:
        assert outcome.state == "done" and outcome.budget_hit
        assert outcome.result.status.value == "stopped"
        block = outcome.start.extras.get("block_size", 8) if outcome.start else 8
        assert 60 <= outcome.result.n_matvec <= 60 + 3 * block  # overshoot: one iteration at most
        assert "stopped" in {f.rule for f in outcome.findings}
    table = summary_frame(outcomes, settings, laplacian.eigenvalues)
    assert list(table["status"]) == ["budget reached"] * 2
    assert table["matvecs to tol"].isna().all()


def test_sequential_runs_converge_and_fill_every_column(laplacian) -> None:  # noqa: ANN001
    settings = CompareSettings(k=3, which="SA", tol=1e-8, budget=None, seed=0)
    configs = [*LOBPCG_PAIR, RunConfig("eigh")]
    outcomes = run_comparison(laplacian, configs, settings)
    assert [o.state for o in outcomes] == ["done"] * 3
    table = summary_frame(outcomes, settings, laplacian.eigenvalues)
    assert list(table["run"]) == ["lobpcg(method=basic)", "lobpcg(method=ortho)", "eigh"]
    assert list(table["converged"]) == ["3/3"] * 3
    assert (table["matvecs to tol"] <= table["matvecs"]).all()
    # eigenvalue errors converge quadratically: error <= tol is reached no later than the residual test
    assert (table["matvecs to error <= tol"] <= table["matvecs to tol"]).all()
    assert (table["max rel. error"] < 1e-8).all()
    assert (table["max rel. residual"] <= 1e-8 * 1.0001).all()
    assert table["findings"].eq("").all()
    # the first record that satisfies the solver's own test is the one the table reports
    reach = first_reaching(outcomes[0].records, 3)
    assert reach is not None and reach.n_matvec == table["matvecs to tol"][0]


def test_parallel_mode_gives_the_same_results(laplacian) -> None:  # noqa: ANN001
    sequential = run_comparison(laplacian, LOBPCG_PAIR, CompareSettings(k=2, which="SA", tol=1e-8, seed=3))
    parallel = run_comparison(laplacian, LOBPCG_PAIR, CompareSettings(k=2, which="SA", tol=1e-8, seed=3,
                                                                       mode="parallel"))
    for a, b in zip(sequential, parallel):
        assert a.result.n_matvec == b.result.n_matvec  # same seed, same arithmetic
        torch.testing.assert_close(a.result.eigenvalues, b.result.eigenvalues)


def test_principal_angles_match_the_svd_definition() -> None:
    rng = np.random.default_rng(0)
    A = np.linalg.qr(rng.standard_normal((50, 3)))[0]
    B = np.linalg.qr(A + 1e-3 * rng.standard_normal((50, 3)))[0]
    expected = np.arccos(np.clip(np.linalg.svd(A.T @ B, compute_uv=False), -1, 1))
    np.testing.assert_allclose(np.sort(principal_angles(A, B)), np.sort(expected), atol=1e-7)
    # invariance: another basis of the same subspace gives angle 0, even for tiny angles
    mixed = A @ np.linalg.qr(rng.standard_normal((3, 3)))[0]
    assert np.max(principal_angles(A, mixed)) < 1e-7
    assert principal_angles(A, np.zeros((50, 2))).size == 0


def test_angle_table_sees_the_same_subspace_inside_a_double_eigenvalue(laplacian) -> None:  # noqa: ANN001
    # k = 3 at the bottom of a square-grid Laplacian: lambda_2 = lambda_3 is double, so the
    # individual vectors differ between solvers but the 3-dimensional subspace does not.
    settings = CompareSettings(k=3, which="SA", tol=1e-10, budget=None, seed=0)
    outcomes = run_comparison(laplacian, [RunConfig("lobpcg"), RunConfig("eigh")], settings)
    table = angle_frame(outcomes)
    assert table.shape == (2, 2) and table.iloc[0, 0] == 0
    assert table.iloc[0, 1] == pytest.approx(table.iloc[1, 0])
    gap = float(laplacian.eigenvalues[3] - laplacian.eigenvalues[2])
    residual = float(outcomes[0].result.residual_norms.max())
    assert table.iloc[0, 1] < math.degrees(10 * residual / gap)  # Davis-Kahan sin(theta) <= ||r|| / gap


def test_a_failing_configuration_does_not_stop_the_others(laplacian) -> None:  # noqa: ANN001
    settings = CompareSettings(k=2, which="SA", tol=1e-8, seed=0)
    configs = [RunConfig("lobpcg", {"block_size": 1}), RunConfig("lobpcg")]  # block < k is refused by the solver
    outcomes = run_comparison(laplacian, configs, settings)
    assert outcomes[0].state == "failed" and outcomes[0].error
    assert outcomes[1].state == "done" and outcomes[1].result.status.ok
    table = summary_frame(outcomes, settings, laplacian.eigenvalues)
    assert table["status"][0].startswith("failed")


class _StopAfter(NullTracker):
    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_iteration(self, record) -> None:  # noqa: ANN001
        self.seen += 1
        if self.seen >= self.n:
            raise StopSolve("stopped by the user")


def test_an_outer_stop_ends_the_run_and_skips_the_rest(laplacian) -> None:  # noqa: ANN001
    settings = CompareSettings(k=2, which="SA", tol=1e-12, budget=None, seed=0)
    collector = ComparisonCollector(LOBPCG_PAIR)
    outcomes = run_comparison(laplacian, LOBPCG_PAIR, settings, tracker=_StopAfter(5), collector=collector)
    assert outcomes[0].result.status.value == "stopped" and not outcomes[0].budget_hit
    assert len(outcomes[0].records) == 5
    assert outcomes[1].state == "skipped" and outcomes[1].result is None
    assert collector.cancelled


def test_check_configs_names_the_run_and_the_rule(laplacian) -> None:  # noqa: ANN001
    settings = CompareSettings(k=2, which="SA")
    with pytest.raises(ValueError, match="2 to 5"):
        check_configs([RunConfig("lobpcg")], settings)
    with pytest.raises(ValueError, match="run 2.*which"):
        check_configs([RunConfig("eigh"), RunConfig("lobpcg")], CompareSettings(which="LM"))
    with pytest.raises(TypeError, match="run 1.*no parameter `nope`"):
        check_configs([RunConfig("lobpcg", {"nope": 1}), RunConfig("eigh")], settings)
    with pytest.raises(ValueError, match="method"):
        check_configs([RunConfig("lobpcg", {"method": "fast"}), RunConfig("eigh")], settings)
    with pytest.raises(ValueError, match="unknown solver"):
        check_configs([RunConfig("magic"), RunConfig("eigh")], settings)
    with pytest.raises(ValueError, match="budget"):
        check_configs(LOBPCG_PAIR, CompareSettings(budget=0))


def test_labels_show_what_differs() -> None:
    collector = ComparisonCollector([RunConfig("lobpcg", {"method": "basic", "preconditioner": "none"}),
                                     RunConfig("lobpcg", {"method": "ortho", "preconditioner": "none"}),
                                     RunConfig("eigh", {"max_memory_fraction": 0.5}),
                                     RunConfig("eigh", {"max_memory_fraction": 0.5}, label="dense")])
    assert [o.label for o in collector.snapshot()] == ["lobpcg(method=basic)", "lobpcg(method=ortho)", "eigh",
                                                       "dense"]


def test_error_series_and_wanted_reference(laplacian) -> None:  # noqa: ANN001
    ref = wanted_reference(laplacian.eigenvalues, 3, "SA")
    np.testing.assert_allclose(ref, laplacian.reference(3, "SA").numpy())
    result = solve("lobpcg", laplacian.operator, 3, which="SA", tol=1e-9, seed=0)
    errors = error_series(result.history, ref)
    assert errors.shape == (len(result.history),)
    assert errors[-1] < 1e-9 < errors[0]
    assert np.isnan(error_series(result.history, None)).all()
    first = first_reaching(result.history, 3, errors=errors, tol=1e-6)
    assert first is not None and first.n_matvec <= result.n_matvec
    assert wanted_reference(None, 3, "LA") is None


def test_budget_tracker_alone() -> None:
    budget = MatvecBudget(None)
    assert budget.budget is None and not budget.hit


def test_a_core_function_outside_the_menu_can_run(laplacian) -> None:  # noqa: ANN001
    calls = []

    def dense(operator, k, *, tracker=None, scale=1.0):  # noqa: ANN001, ANN202
        calls.append(scale)
        return solve("eigh", operator, k, which="SA", tracker=tracker)

    settings = CompareSettings(k=2, which="SA", tol=1e-8)
    configs = [RunConfig("dense-by-hand", {"scale": 2.0}, fn=dense), RunConfig("lobpcg")]
    outcomes = run_comparison(laplacian, configs, settings)
    assert calls == [2.0] and outcomes[0].state == "done" and outcomes[0].result.status.ok
    assert outcomes[0].label == "dense-by-hand(scale=2.0)"
    with pytest.raises(TypeError, match="callable"):
        check_configs([RunConfig("x", fn=42), RunConfig("lobpcg")], settings)  # type: ignore[arg-type]
