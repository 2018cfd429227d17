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


# -- interior eigenvalues: a shared sigma ----------------------------------------------
def _exact_2d(n: int) -> np.ndarray:
    """The closed form of problems.laplacian_2d(n): sums of 4 sin^2(i pi / (2 (n + 1)))."""
    one = 4.0 * np.sin(np.arange(1, n + 1) * np.pi / (2 * (n + 1))) ** 2
    return np.sort((one[:, None] + one[None, :]).ravel())


@pytest.mark.parametrize("which", ["LM", "LA", "SA"])
def test_a_shared_sigma_compares_every_run_on_the_eigenvalues_nearest_it(laplacian, which) -> None:  # noqa: ANN001
    sigma, k, tol = 3.1, 4, 1e-9
    exact = _exact_2d(12)
    d = exact - sigma
    key = {"LM": np.abs(d), "LA": np.where(d >= 0, d, np.inf), "SA": np.where(d <= 0, -d, np.inf)}[which]
    wanted = exact[np.argsort(key, kind="stable")[:k]]
    settings = CompareSettings(k=k, which=which, tol=tol, budget=None, sigma=sigma)
    configs = [RunConfig("lanczos"), RunConfig("lobpcg"), RunConfig("eigh")]
    outcomes = run_comparison(laplacian, configs, settings, count=(2, 5), reference=exact)
    table = summary_frame(outcomes, settings, exact)
    assert list(table["status"]) == ["converged"] * 3, list(table["run"])
    for outcome in outcomes:
        assert outcome.config.params["sigma"] == sigma  # the shared sigma reached every run
        values = np.sort(outcome.result.eigenvalues.numpy())
        # a converged pair's eigenvalue error is at most its residual (here <= tol ||A||, ||A|| < 8)
        np.testing.assert_allclose(values, np.sort(wanted), rtol=0, atol=8 * tol)
        ref = wanted_reference(exact, k, which, sigma=sigma)
        np.testing.assert_allclose(np.sort(ref), np.sort(wanted), rtol=1e-14)
    assert (table["max rel. error"] < 8 * tol / np.min(np.abs(wanted))).all()
    assert table["matvecs to error <= tol"].notna().all()
    # the runs found one invariant subspace (the wanted eigenvalues are separated from the rest)
    angles = angle_frame(outcomes, degrees=False).to_numpy()
    assert np.nanmax(angles) < 1e-5
    assert not any(f.rule == "missed_eigenvalue" for o in outcomes for f in o.findings)


def test_a_solver_without_sigma_is_refused_near_sigma_with_the_alternatives(laplacian) -> None:  # noqa: ANN001
    settings = CompareSettings(k=3, which="LM", sigma=1.0)
    with pytest.raises(ValueError, match=r"run 2 .*power_iteration cannot look for the eigenvalues nearest sigma = 1.*"
                                         r"lobpcg, lanczos, eigh"):
        check_configs([RunConfig("lanczos"), RunConfig("power_iteration")], settings)
    with pytest.raises(ValueError, match="with sigma, `which` is LM"):
        check_configs([RunConfig("lanczos"), RunConfig("eigh")], CompareSettings(k=3, which="BE", sigma=1.0))
    # lobpcg alone has no LM; near sigma it has (its own sigma counts as well as the shared one)
    check_configs([RunConfig("lobpcg", {"sigma": 1.0}), RunConfig("lanczos", {"sigma": 1.0})],
                  CompareSettings(k=3, which="LM"))
    with pytest.raises(ValueError, match="lobpcg supports which"):
        check_configs([RunConfig("lobpcg"), RunConfig("lanczos", {"sigma": 1.0})], CompareSettings(k=3, which="LM"))


def test_runs_that_look_for_different_eigenvalues_are_flagged(laplacian) -> None:  # noqa: ANN001
    from explorer.analysis.compare import target_note

    exact = _exact_2d(12)
    # plain SA and shift-invert at 0 look for the same 3 (the Laplacian is positive definite): no note
    same = [RunConfig("lanczos"), RunConfig("lanczos", {"sigma": 0.0})]
    assert target_note(same, CompareSettings(k=3, which="SA"), exact) is None
    # ... but LM near 0 is not "the 3 largest"
    note = target_note([RunConfig("lanczos"), RunConfig("lanczos", {"sigma": 0.0})], CompareSettings(k=3, which="LA"),
                       exact)
    assert note and "run 1 the 3 largest (LA)" in note and "run 2 the 3 nearest above sigma = 0" in note
    # without exact eigenvalues the descriptions are compared
    assert target_note(same, CompareSettings(k=3, which="SA"), None) is not None
    assert target_note([RunConfig("lanczos"), RunConfig("eigh")], CompareSettings(k=3, sigma=2.0, which="LM")) is None


def test_lobpcg_near_sigma_reaches_tol_in_its_last_pass(laplacian) -> None:  # noqa: ANN001
    """LOBPCG with LM near sigma runs above sigma, then below: the first pass's records hold values that are
    not among the k nearest; each record is judged against what its pass looks for, and 'reached tol'
    is only counted in the last pass."""
    from explorer.solvers.shift_invert import last_pass_start, pass_references

    exact = _exact_2d(12)
    sigma, k = 3.1, 4
    result = solve("lobpcg", laplacian.operator, k, which="LM", sigma=sigma, tol=1e-10, seed=0)
    records = result.history
    sides = [r.extras["target_which"] for r in records]
    assert "LA" in sides and "SA" in sides
    start = last_pass_start(records)
    assert 0 < start < len(records) and set(sides[start:]) == {sides[-1]}
    targets = pass_references(records, exact)
    above = exact[exact >= sigma][: records[0].extras["target_k"]]
    np.testing.assert_allclose(np.sort(targets[0]), above, rtol=1e-14)
    ref = wanted_reference(exact, k, "LM", sigma=sigma)
    errors = error_series(records, ref, match="nearest", spectrum=exact)
    assert errors[start - 1] < 1e-8  # the first pass converged to its own target
    naive = error_series(records, ref, match="nearest")  # against the result's eigenvalues only
    assert naive[start - 1] > 1e-3  # ... which its values are not all among
    assert errors[-1] < 1e-8
