"""Pure helpers behind the app: figure builders, snippets, run log, preview facts, problem sources."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from explorer.runs.jobs import SolveJob
from explorer.operators import as_operator
from explorer.plots.figures import (compare_figure, convergence_curve, decimate_indices, live_figure, matrix_figure,
                            spectrum_figure, wanted_reference)
from explorer.problems.preview import block_abs, describe
from explorer.problems import generate
from explorer.runs.config import SolveConfig, default_solver, make_target
from explorer.runs.record import history_csv, history_json, run_from_view, runs_frame
from explorer.runs.snippet import solve_snippet
from explorer.solvers import SOLVERS, solve
from explorer.problems.sources import ProblemSource, load_problem, reference_spectrum


def _records(steps: int = 1000, k: int = 3):
    from explorer.tracking import IterationRecord

    out = []
    for it in range(1, steps + 1):
        out.append(IterationRecord(solver="demo", iteration=it, ritz_values=torch.tensor([3.0, 2.0, 1.0][:k], dtype=torch.float64) - 1 / it,
                                   residual_norms=torch.full((k,), 1.0 / it, dtype=torch.float64), residuals_estimated=False,
                                   orthogonality_loss=1e-15 * it, n_converged=min(k, it // 300),
                                   n_matvec=it * k, elapsed_s=it * 0.01))
    return out


def test_decimate_keeps_ends_and_caps_points():
    idx = decimate_indices(10_000, 400)
    assert len(idx) <= 400 and idx[0] == 0 and idx[-1] == 9_999
    assert list(decimate_indices(5, 400)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("which,expected", [("LA", [5, 4]), ("SA", [-7, 1]), ("LM", [-7, 5]), ("BE", [5, -7])])
def test_wanted_reference_uses_the_solver_order(which, expected):
    assert list(wanted_reference(np.array([1.0, 2.0, 5.0, 4.0, -7.0]), 2, which)) == expected


def test_wanted_reference_matches_problem_reference():
    problem = generate("laplacian_1d", n=50)
    for which in ("LA", "SA", "LM", "BE"):
        np.testing.assert_allclose(wanted_reference(problem.eigenvalues, 5, which),
                                   problem.reference(5, which).numpy())


def test_live_figure_is_decimated_and_has_every_panel():
    records = _records(1000)
    figure = live_figure(records, reference=[3.0, 2.0, 1.0], tol=1e-6, spectrum=np.arange(-5.0, 6.0))
    layout = figure.layout
    assert layout.yaxis2.type == "log" and layout.yaxis3.type == "log" and layout.yaxis4.type == "log"
    for trace in figure.data:
        assert len(trace.x) <= 3 * 400  # reference lines use 3 points per line
    ritz = [t for t in figure.data if t.name and t.name.startswith("\u03b8")]
    assert len(ritz) == 3 and all(len(t.x) <= 400 for t in ritz)
    assert ritz[0].x[-1] == 1000  # the last iteration is always drawn
    errors = [t for t in figure.data if t.name and t.name.startswith("err")]
    np.testing.assert_allclose(errors[0].y[-1], 1e-3, rtol=1e-4)  # float32 records
    assert any(t.name == "nearby eigenvalues" for t in figure.data)
    json.loads(figure.to_json())  # serialisable for st.plotly_chart


def test_live_figure_without_reference_shows_converged_count():
    figure = live_figure(_records(10), x="n_matvec")
    assert figure.layout.yaxis3.type != "log"
    assert any(t.name == "converged" for t in figure.data)
    assert all(len(t.x) == 0 for t in live_figure([]).data)


def test_other_figures_build():
    records = _records(50)
    xs, ys = convergence_curve(records, metric="error", reference=[3.0, 2.0, 1.0])
    np.testing.assert_allclose(ys[-1], 1 / 50)
    compare = compare_figure([{"label": "a", "records": records}, {"label": "b", "records": records[:10]}],
                             metric="residual", tol=1e-6)
    assert [t.name for t in compare.data][:2] == ["a", "b"]
    spectrum = spectrum_figure(torch.tensor([3.0, 2.0]), np.arange(5000.0), converged=torch.tensor([True, False]))
    assert "2000 of 5000" in spectrum.data[0].name
    A = generate("laplacian_2d", nx=30, ny=30).operator
    blocks = block_abs(A, cells=100)
    assert blocks.shape == (100, 100)
    np.testing.assert_allclose(blocks.sum(), np.abs(A.to_scipy().data).sum())
    matrix_figure(blocks, 900)


def test_preview_facts():
    dense = as_operator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
    facts = describe(dense)
    assert facts.n == 10 and facts.nnz == 10 and facts.symmetry_error < 1e-12
    assert 9.0 <= facts.norm_lower <= 10.0 + 1e-9 and facts.norm_upper >= 10.0
    blocks = block_abs(dense, cells=5)
    assert blocks.shape == (5, 5) and blocks.sum() == pytest.approx(55.0)
    assert dict(facts.as_rows())["size n"] == "10"


def _solver_name() -> str:
    return default_solver()


@pytest.mark.parametrize("source", [ProblemSource.generated("laplacian_2d", {"nx": 12, "ny": 10}),
                                    ProblemSource.sample("laplacian2d_30x30")])
def test_snippet_runs_and_reproduces_the_app_solve(source):
    solver = _solver_name()
    spec = SOLVERS[solver]
    config = SolveConfig(solver=solver, k=3, which=spec.which[0], tol=1e-8, max_iter=spec.default_max_iter,
                         seed=7, extras=spec.defaults())
    problem = load_problem(source)
    app_result = make_target(problem, config)(None)  # what the app's job runs
    code = solve_snippet(source, solver, config.params(), device=config.device, dtype=config.dtype)
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102 - our own generated code
    np.testing.assert_allclose(scope["result"].eigenvalues.numpy(), app_result.eigenvalues.numpy(), rtol=1e-12)
    assert "eigenvalue" in out.getvalue()


def test_snippet_for_an_upload(tmp_path, monkeypatch):
    from explorer.problems.files import save_matrix

    A = generate("laplacian_1d", n=40)
    save_matrix(tmp_path / "lap.mtx", A.operator)
    data = (tmp_path / "lap.mtx").read_bytes()
    source = ProblemSource.upload("lap.mtx", data)
    solver = _solver_name()
    spec = SOLVERS[solver]
    params = {"k": 2, "which": spec.which[0], "tol": 1e-8, "max_iter": spec.default_max_iter, "seed": 0,
              **spec.defaults()}
    code = solve_snippet(source, solver, params)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102
    np.testing.assert_allclose(scope["result"].eigenvalues.numpy(), A.reference(2, spec.which[0]).numpy(),
                               rtol=1e-6)


def test_reference_spectrum_analytic_dense_or_unknown():
    lap = generate("laplacian_1d", n=30)
    assert torch.equal(reference_spectrum(lap), lap.eigenvalues)
    from explorer.problems import Problem

    hidden = Problem(name="x", description="", operator=lap.operator, eigenvalues=None)
    np.testing.assert_allclose(reference_spectrum(hidden).numpy(), lap.eigenvalues.numpy(), atol=1e-12)
    assert reference_spectrum(hidden, max_n=10) is None


def test_run_log_from_a_job_and_its_exports():
    problem = generate("laplacian_1d", n=60)
    solver = _solver_name()
    spec = SOLVERS[solver]
    config = SolveConfig(solver=solver, k=2, which=spec.which[0], tol=1e-8, max_iter=spec.default_max_iter,
                         extras=spec.defaults())
    job = SolveJob(make_target(problem, config), params=config.params()).start()
    assert job.wait(60)
    reference = wanted_reference(problem.eigenvalues, 2, config.which)
    run = run_from_view(1, job.view(), solver=solver, problem="p", n=60, params=config.params(), reference=reference)
    assert run.status == run.result.status.value and run.max_error is not None and run.max_error < 1e-5
    frame = runs_frame([run])
    assert list(frame["solver"]) == [solver] and frame["matvecs"].iloc[0] == run.n_matvec
    csv = history_csv(run.records).splitlines()
    assert csv[0].startswith("solver,iteration,index,ritz_value,residual_norm")
    assert len(csv) == 1 + 2 * len(run.records)
    payload = json.loads(history_json(run.records, meta={"tol": 1e-8}))
    assert len(payload["records"]) == len(run.records) and payload["meta"]["tol"] == 1e-8


def test_failed_job_becomes_a_failed_run():
    problem = generate("laplacian_1d", n=10)
    config = SolveConfig(solver=_solver_name(), k=50, which="LA", tol=1e-8, max_iter=10)
    job = SolveJob(make_target(problem, config)).start()
    assert job.wait(30)
    run = run_from_view(3, job.view(), solver=config.solver, problem="p", n=10, params=config.params())
    assert run.status == "failed" and "`k`" in run.message and run.result is None
    assert runs_frame([run])["status"].iloc[0] == "failed"


def test_problem_source_labels_and_keys():
    a = ProblemSource.generated("laplacian_2d", {"ny": 3, "nx": 2})
    b = ProblemSource.generated("laplacian_2d", {"nx": 2, "ny": 3})
    assert a == b and hash(a) == hash(b) and a.label == "laplacian_2d(nx=2, ny=3)"
    up = ProblemSource.upload("A.mtx", b"abc", symmetrize=True)
    assert up.digest == ProblemSource.upload("B.mtx", b"abc").digest and "symmetrized" in up.label
    _ = solve  # the public entry the snippet uses


def test_snippet_for_a_generalized_problem():
    spec = next((s for s in SOLVERS.values() if s.supports_B and s.name != "eigh"), SOLVERS["eigh"])
    source = ProblemSource.generated("mikota_pair", {"n": 20})
    params = {"k": 2, "which": "SA", "tol": 1e-8, "max_iter": spec.default_max_iter, "seed": 0, **spec.defaults()}
    code = solve_snippet(source, spec.name, params, generalized=True)
    assert "B=B" in code
    scope: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102
    np.testing.assert_allclose(scope["result"].eigenvalues.numpy(), [1.0, 4.0], rtol=1e-6)


def test_the_test_process_uses_one_torch_thread():
    """tests/conftest.py sets it at import; threads started later inherit it."""
    import threading

    assert torch.get_num_threads() == 1
    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    assert seen == [1]


# -- shift-invert and spectrum slicing in the app's core: references, errors, B with lanczos, snippets --
def _closed_form_1d(n: int) -> np.ndarray:
    return 4.0 * np.sin(np.arange(1, n + 1) * np.pi / (2 * (n + 1))) ** 2


@pytest.mark.parametrize("which", ["LM", "LA", "SA"])
def test_wanted_reference_with_sigma_is_the_nearest_in_the_solver_order(which):
    from explorer.analysis.compare import wanted_reference as compare_reference

    lam = _closed_form_1d(50)
    sigma = 1.05
    if which == "LM":
        expected = lam[np.argsort(np.abs(lam - sigma))[:3]]
    elif which == "LA":
        expected = np.sort(lam[lam >= sigma])[:3]
    else:
        expected = np.sort(lam[lam <= sigma])[::-1][:3]
    for reference in (wanted_reference, compare_reference):
        np.testing.assert_allclose(reference(torch.from_numpy(lam[::-1].copy()), 3, which, sigma=sigma), expected)


def test_wanted_reference_of_an_interval_is_all_of_it_whatever_k():
    lam = _closed_form_1d(50)
    inside = lam[(lam >= 1.0) & (lam < 2.0)]
    assert inside.size > 4
    for k in (1, 4, 200):
        np.testing.assert_allclose(wanted_reference(lam[::-1], k, "SA", lower=1.0, upper=2.0), inside)
    assert wanted_reference(lam, 4, "SA", lower=10.0, upper=11.0).size == 0
    assert wanted_reference(None, 4, "SA", lower=1.0, upper=2.0) is None


def test_ritz_errors_pair_by_index_or_with_the_nearest():
    from explorer.plots.figures import reference_match, ritz_errors

    ritz = np.array([[1.1, 2.9], [2.05, 0.98]])
    np.testing.assert_allclose(ritz_errors(ritz, [1.0, 3.0]), [[0.1, 0.1], [1.05, 2.02]])
    np.testing.assert_allclose(ritz_errors(ritz, [1.0, 3.0, 2.0], "nearest"), [[0.1, 0.1], [0.05, 0.02]])
    assert np.isnan(ritz_errors(ritz, [1.0])[:, 1]).all()
    assert reference_match({"sigma": 1.0}) == reference_match({"lower": 0, "upper": 1}) == "nearest"
    assert reference_match({"sigma": None, "lower": None}) == reference_match(None) == "index"


def test_an_interval_run_is_judged_against_the_interval():
    problem = generate("laplacian_1d", n=80)
    lam = _closed_form_1d(80)
    inside = lam[(lam >= 0.5) & (lam < 0.9)]
    config = SolveConfig(solver="lanczos", k=200, which="SA", tol=1e-10, max_iter=1000,
                         extras={"lower": 0.5, "upper": 0.9})
    job = SolveJob(make_target(problem, config), params=config.params()).start()
    assert job.wait(60)
    reference = wanted_reference(problem.eigenvalues, config.k, config.which, **config.spectral())
    run = run_from_view(1, job.view(), solver="lanczos", problem="p", n=80, params=config.params(), reference=reference)
    assert run.status == "converged" and run.result.k == inside.size != config.k
    assert run.max_error <= float(run.result.residual_norms.max()) + 1e-14  # |theta - lambda| <= ||r||
    assert f"so {inside.size} eigenvalues lie in [0.5, 0.9)" in run.message and "none was missed" in run.message
    assert runs_frame([run])["converged"].iloc[0] == f"{inside.size}/{inside.size}"
    # the live error panel pairs each Ritz value with the nearest wanted eigenvalue
    figure = live_figure(run.records, reference=reference, tol=1e-10, match="nearest")
    assert any(trace.name.startswith("err") for trace in figure.data)


def test_lanczos_with_sigma_solves_a_generalized_problem_and_says_when_it_cannot():
    pair = generate("mikota_pair", n=40)  # K x = lambda M x with lambda = i^2
    spec = SOLVERS["lanczos"]
    assert not spec.supports_B and spec.accepts_B({"sigma": 3.0}) and spec.accepts_B({"lower": 1, "upper": 2})
    assert not spec.accepts_B({"sigma": None}) and SOLVERS["lobpcg"].accepts_B({})
    assert "sigma" in spec.param("sigma").help and "generalized" in spec.param("sigma").help
    config = SolveConfig(solver="lanczos", k=3, which="LM", tol=1e-10, max_iter=500, extras={"sigma": 10.0})
    result = make_target(pair, config)(None)
    assert result.status.value == "converged"
    np.testing.assert_allclose(sorted(result.eigenvalues.tolist()), [4.0, 9.0, 16.0], rtol=1e-9)
    sliced = make_target(pair, SolveConfig(solver="lanczos", k=50, which="SA", tol=1e-10, max_iter=500,
                                           extras={"lower": 2.0, "upper": 40.0}))(None)
    np.testing.assert_allclose(sliced.eigenvalues.numpy(), [4.0, 9.0, 16.0, 25.0, 36.0], rtol=1e-9)
    with pytest.raises(ValueError, match="lanczos solves a generalized problem A x = .* B x only with sigma or an "
                                         "interval"):
        make_target(pair, SolveConfig(solver="lanczos", k=3, which="LA", tol=1e-8, max_iter=50))(None)
    with pytest.raises(ValueError, match="power_iteration does not solve generalized problems.*lanczos with sigma"):
        make_target(pair, SolveConfig(solver="power_iteration", k=1, which="LM", tol=1e-8, max_iter=50))(None)


def test_snippet_of_a_shift_invert_run_compares_with_the_nearest_eigenvalues():
    source = ProblemSource.generated("mikota_pair", {"n": 20})
    params = {"k": 2, "which": "LM", "tol": 1e-10, "max_iter": 500, "seed": 0, **SOLVERS["lanczos"].defaults(),
              "sigma": 9.5}
    code = solve_snippet(source, "lanczos", params, generalized=True)
    assert "sigma=9.5" in code and "spectral_reference" in code
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102
    np.testing.assert_allclose(scope["exact"], [9.0, 4.0])
    frame = scope["result"].to_frame(torch.as_tensor(scope["exact"]))
    assert frame["abs_error"].max() < 1e-8
