"""AppTest (no browser): the Explore page loads, runs, stops, uploads and reports errors."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from explorer.problems.files import save_matrix
from explorer.solvers import SOLVERS
from explorer.problems.sources import ProblemSource

pytestmark = pytest.mark.slow


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def _chart_specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _live_spec(at) -> dict:
    for spec in _chart_specs(at):
        axes = spec.get("layout", {})
        if "yaxis4" in axes:  # the 2 x 2 live panel
            return spec
    raise AssertionError("no live convergence chart on the page")


def _trace_len(trace: dict) -> int:
    x = trace.get("x")
    if isinstance(x, dict) and "bdata" in x:  # plotly 7 binary arrays
        import base64

        return len(np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"])))
    return len(x or [])


def _no_trouble(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _iterative_solver() -> str:
    for name in ("lobpcg", "lanczos", "power_iteration"):
        if name in SOLVERS:
            return name
    pytest.skip("no iterative solver registered")


def test_explore_opens_with_the_first_sample_ready(apptest):
    at = apptest()
    _no_trouble(at)
    from explorer.problems.samples import list_samples

    first = list_samples()[0].name
    assert at.selectbox(key="sample").value == first
    assert at.session_state["problem_source"] == ProblemSource.sample(first)
    assert at.title[0].value == "Eigensolver Explorer"
    assert not at.button(key="run").disabled
    # every eigensolver of the registry is in the menu (the SVD solvers come with a rectangular matrix),
    # and its form is built from its params
    assert set(at.selectbox(key="solver").options) == {s.label for s in SOLVERS.values() if s.kind == "eigen"}
    assert at.number_input(key="tol").value == pytest.approx(SOLVERS[at.session_state["solver"]].default_tol)


def test_run_a_sample_to_the_end_and_see_table_and_charts(apptest, wait_job):
    at = apptest()
    solver = _iterative_solver()
    at.selectbox(key="solver").set_value(solver).run()
    at.number_input(key="k").set_value(3).run()
    at.number_input(key="tol").set_value(1e-8).run()
    at.button(key="run").click().run()
    _no_trouble(at)
    wait_job(at, timeout=90)
    _no_trouble(at)
    assert any("converged" in t for t in _texts(at.success)), _texts(at.success) + _texts(at.warning)
    table = at.dataframe[-1].value if hasattr(at.dataframe[-1], "value") else None
    run = at.session_state["runs"][-1]
    assert run.status == "converged" and run.solver == solver and run.params["k"] == 3
    assert run.max_error is not None and run.max_error < 1e-6  # sample eigenvalues are exact
    frame = run.result.to_frame()
    assert len(frame) == 3
    if table is not None:
        assert len(table) == 3
    live = _live_spec(at)
    ritz = [t for t in live["data"] if str(t.get("name", "")).startswith("\u03b8")]
    assert len(ritz) == 3 and all(0 < _trace_len(t) <= 400 for t in ritz)
    names = {t.get("name") for t in live["data"]}
    assert "exact eigenvalues" in names and any(str(n).startswith("tol") for n in names)
    labels = [b.label for b in at.get("download_button")]
    assert {"History (CSV)", "History (JSON)", "Eigenvalues (.npy)", "Eigenvectors (.npy)"} <= set(labels)
    assert any("solve(" in c.value for c in at.code)  # the reproduce snippet


def test_the_lanczos_form_offers_a_record_for_every_step(apptest, wait_job):
    """ritz_every is a registry parameter: its selectbox shows "record every step", and a run
    with it records each Lanczos step (the default "auto" records fewer)."""
    if "lanczos" not in SOLVERS:
        pytest.skip("lanczos is not registered")
    at = apptest()
    at.selectbox(key="solver").set_value("lanczos").run()
    box = at.selectbox(key="p_lanczos_ritz_every")
    assert box.value == "auto" and "record every step" in box.options
    box.set_value(1).run()
    at.number_input(key="k").set_value(2).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.params["ritz_every"] == 1
    history = run.result.history
    assert [r.iteration for r in history] == list(range(1, run.result.n_iter + 1))


def test_stop_mid_run_keeps_the_partial_history(apptest, get_job):
    at = apptest()
    solver = _iterative_solver()
    at.radio(key="problem_mode").set_value("Generate").run()
    at.selectbox(key="gen_name").set_value("laplacian_2d").run()
    at.number_input(key="g_laplacian_2d_nx").set_value(100).run()
    at.number_input(key="g_laplacian_2d_ny").set_value(100).run()
    at.button(key="generate").click().run()
    assert at.session_state["problem_source"].kind == "generate"
    at.selectbox(key="solver").set_value(solver).run()
    at.number_input(key="tol").set_value(1e-14).run()
    at.number_input(key="max_iter").set_value(5000).run()
    at.button(key="run").click().run()
    job = get_job(at)
    deadline = time.monotonic() + 60
    while len(job.view().records) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        at.run()
    assert job.alive, "the solve ended before Stop could be pressed"
    assert at.button(key="run").disabled  # no second solve while one runs
    at.button(key="stop").click().run()
    assert job.wait(15), "the job did not stop within 15 s"
    at.run()
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "stopped" and len(run.records) >= 3
    assert any("stopped" in t for t in _texts(at.warning))
    assert not at.button(key="run").disabled


def _matrix_bytes(suffix: str, matrix) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"A{suffix}"
        save_matrix(path, matrix)
        return path.read_bytes()


def _spd(n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, n))
    return X @ X.T / n + np.eye(n)


def _upload(at, name: str, data: bytes):
    at.file_uploader(key="upload").set_value((name, data, "application/octet-stream")).run()
    return at


def test_upload_every_accepted_format(apptest):
    at = apptest()
    at.radio(key="problem_mode").set_value("Upload").run()
    _no_trouble(at)
    A = _spd(40)
    laplace = sp.diags([-np.ones(29), 2 * np.ones(30), -np.ones(29)], [-1, 0, 1], format="csr")
    cases = [(".npy", A), (".npz", A), (".npz", laplace), (".mtx", laplace), (".mtx.gz", A), (".csv", A),
             (".pt", torch.from_numpy(A)), (".safetensors", torch.from_numpy(A))]
    for i, (suffix, matrix) in enumerate(cases):
        name = f"m{i}{suffix}"
        _upload(at, name, _matrix_bytes(suffix, matrix))
        _no_trouble(at)
        source = at.session_state["problem_source"]
        assert source.kind == "upload" and source.name == name, (name, source, _texts(at.error))
        n = matrix.shape[0]
        assert f"n = {n:,}" in at.markdown[0].value or any(f"n = {n:,}" in e.label for e in at.expander)
        assert not at.error, _texts(at.error)


def test_bad_uploads_give_messages_and_keep_the_problem(apptest):
    from streamlit import config

    at = apptest()
    before = at.session_state["problem_source"]
    at.radio(key="problem_mode").set_value("Upload").run()
    bad = [
        ("corrupt.npy", b"\x93NUMPY this is not an array", "corrupt.npy"),
        ("rect.csv", _matrix_bytes(".csv", np.ones((3, 4)))[:-3] + b"x\n", "could not be parsed"),
        ("nan.npy", _matrix_bytes(".npy", np.array([[1.0, np.nan], [np.nan, 1.0]])), "NaN"),
        ("notes.gz", b"hello", "unsupported suffix"),
    ]
    for name, data, expected in bad:
        _upload(at, name, data)
        _no_trouble(at)
        errors = " ".join(_texts(at.error))
        assert expected in errors, (name, errors)
        assert at.session_state["problem_source"] == before
    # non-symmetric: a clear message and a one-click symmetrize that reloads the file
    _upload(at, "nonsym.npy", _matrix_bytes(".npy", np.array([[2.0, 1.0], [0.0, 3.0]])))
    assert "not symmetric" in " ".join(_texts(at.error))
    assert at.session_state["problem_source"] == before
    at.button(key="symmetrize_now").click().run()
    _no_trouble(at)
    source = at.session_state["problem_source"]
    assert source.kind == "upload" and source.symmetrize and source.name == "nonsym.npy"
    assert not at.error
    # too large for server.maxUploadSize
    old = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)
    try:
        _upload(at, "big.npy", _matrix_bytes(".npy", np.eye(400)))  # 1.28 MB
        assert "upload limit of 1 MB" in " ".join(_texts(at.error))
        assert at.session_state["problem_source"] == source
    finally:
        config.set_option("server.maxUploadSize", old)


def _known_svd(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """U diag(s) V^T with orthonormal U, V and singular values 1 ... 0.1 (and the values, descending)."""
    rng = np.random.default_rng(seed)
    r = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    values = np.linspace(1.0, 0.1, r)
    return (U * values) @ V.T, values


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mtx", ".csv"])
def test_rectangular_upload_offers_the_svd_solvers_and_runs(apptest, wait_job, suffix):
    """A rectangular upload: the preview shows its shape, the solver menu holds the SVD solvers only,
    and Run gives singular values that match the exact ones (a dense SVD of the upload)."""
    at = apptest()
    at.radio(key="problem_mode").set_value("Upload").run()
    A, values = _known_svd(60, 25)
    matrix = sp.csr_matrix(A) if suffix == ".mtx" else A
    _upload(at, f"rect{suffix}", _matrix_bytes(suffix, matrix))
    _no_trouble(at)
    assert not at.error, _texts(at.error)
    source = at.session_state["problem_source"]
    assert source.kind == "upload" and source.name == f"rect{suffix}"
    assert any("60 \u00d7 25" in e.label and "SVD" in e.label for e in at.expander)
    svd_labels = {s.label for s in SOLVERS.values() if s.kind == "svd"}
    assert set(at.selectbox(key="solver").options) == svd_labels
    assert at.session_state["solver"] == "golub_kahan"
    at.number_input(key="k").set_value(3).run()
    at.number_input(key="tol").set_value(1e-10).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged", run.message
    np.testing.assert_allclose(run.reference, values[:3], rtol=0, atol=1e-13)
    np.testing.assert_allclose(run.result.singular_values.numpy(), values[:3], rtol=0, atol=1e-9)
    assert run.result.U.shape == (60, 3) and run.result.V.shape == (25, 3)
    markdown = " ".join(_texts(at.markdown))
    assert "Singular triplets" in markdown
    columns = [set(frame.value.columns) for frame in at.dataframe]
    assert any({"singular value \u03c3", "exact \u03c3"} <= c for c in columns), columns


def test_the_chebyshev_run_shows_its_filter_degree_and_bounds(apptest, wait_job):
    at = apptest()
    at.selectbox(key="solver").set_value("chebyshev").run()
    at.selectbox(key="which").set_value("SA").run()
    at.number_input(key="k").set_value(3).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged", run.message
    np.testing.assert_allclose(run.result.eigenvalues.numpy(), run.reference, rtol=0, atol=1e-5)
    captions = " ".join(_texts(at.caption))
    assert "degree" in captions and "filter low" in captions and "filter high" in captions
    names = [trace.get("name") for trace in _live_spec(at)["data"]]
    assert "filter cut" in names


def test_back_to_a_square_problem_restores_the_eigensolvers(apptest):
    at = apptest()
    at.radio(key="problem_mode").set_value("Upload").run()
    A, _ = _known_svd(20, 35)
    _upload(at, "wide.npy", _matrix_bytes(".npy", A))
    assert at.session_state["solver"] == "golub_kahan"
    at.radio(key="problem_mode").set_value("Sample").run()
    _no_trouble(at)
    assert SOLVERS[at.session_state["solver"]].kind == "eigen"
    assert set(at.selectbox(key="solver").options) == {s.label for s in SOLVERS.values() if s.kind == "eigen"}


def test_rectangular_upload_refuses_symmetrize_and_B(apptest):
    at = apptest()
    at.radio(key="problem_mode").set_value("Upload").run()
    before = at.session_state["problem_source"]
    at.checkbox(key="symmetrize").check().run()
    A, _ = _known_svd(12, 7)
    _upload(at, "rect.npy", _matrix_bytes(".npy", A))
    errors = " ".join(_texts(at.error))
    assert "not square" in errors and "SVD solvers" in errors
    assert at.session_state["problem_source"] == before


def test_generalized_upload_with_B_runs(apptest, wait_job):
    spec = next((s for s in SOLVERS.values() if s.supports_B and s.name != "eigh"), None)
    if spec is None:
        pytest.skip("no iterative solver supports B")
    at = apptest()
    at.radio(key="problem_mode").set_value("Upload").run()
    from explorer.problems import mikota_pair

    pair = mikota_pair(30)
    at.file_uploader(key="upload_b").set_value(("M.npz", _matrix_bytes(".npz", pair.B.to_scipy()), "x")).run()
    _upload(at, "K.npz", _matrix_bytes(".npz", pair.operator.to_scipy()))
    _no_trouble(at)
    source = at.session_state["problem_source"]
    assert source.b_name == "M.npz", _texts(at.error)
    at.selectbox(key="solver").set_value(spec.name).run()
    at.selectbox(key="which").set_value("SA").run()
    at.number_input(key="k").set_value(2).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.result is not None and run.reference is not None  # dense eigh reference with B
    np.testing.assert_allclose(run.reference, [1.0, 4.0], rtol=1e-8)


def test_invalid_settings_give_the_core_message_not_a_traceback(apptest, wait_job):
    """k above the solver's limit: the core's ValueError is shown, the run is logged as failed."""
    limited = next((s for s in SOLVERS.values() if s.k_limit is not None), None)
    if limited is None:
        pytest.skip("no solver declares a k limit")
    at = apptest()
    at.radio(key="problem_mode").set_value("Generate").run()
    at.selectbox(key="gen_name").set_value("laplacian_1d").run()
    n = 6000
    at.number_input(key="g_laplacian_1d_n").set_value(n).run()
    at.button(key="generate").click().run()
    before = at.session_state["problem_source"]
    assert before.kind == "generate"
    at.selectbox(key="solver").set_value(limited.name).run()
    k = limited.k_limit(n) + 1
    assert k <= n, "this test needs a solver whose k limit is below n"
    at.number_input(key="k").set_value(k).run()
    at.button(key="run").click().run()
    wait_job(at)
    _no_trouble(at)
    errors = " ".join(_texts(at.error))
    assert "`k`" in errors and str(k) in errors, errors
    assert at.session_state["runs"][-1].status == "failed"
    assert at.session_state["problem_source"] == before  # what the user had stays


def test_generalized_problem_with_a_solver_without_B(apptest, wait_job):
    no_b = next((s.name for s in SOLVERS.values() if not s.supports_B), None)
    from explorer.problems.samples import list_samples

    generalized = next((s.name for s in list_samples() if s.b_file), None)
    if no_b is None or generalized is None:
        pytest.skip("needs a solver without B support and a generalized sample")
    at = apptest()
    at.selectbox(key="sample").set_value(generalized).run()
    at.selectbox(key="solver").set_value(no_b).run()
    at.button(key="run").click().run()
    wait_job(at)
    _no_trouble(at)
    assert "generalized" in " ".join(_texts(at.error))
    assert at.session_state["runs"][-1].status == "failed"


def test_failed_and_stopped_runs_reach_the_history_page(apptest, wait_job):
    at = apptest()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    at.switch_page("pages/history.py").run()
    _no_trouble(at)
    assert at.title[0].value == "Run history"
    frame = at.dataframe[0].value
    assert len(frame) == 1 and frame["status"].iloc[0] in ("converged", "max_iter reached")
    assert any(b.label == "Export table (CSV)" for b in at.get("download_button"))
    # back to Explore: the sidebar settings and the result survive the page switch
    at.switch_page("pages/explore.py").run()
    _no_trouble(at)
    assert at.session_state["runs"][0].run_id == 1


def test_a_large_sparse_problem_runs_lanczos_with_chebyshev_acceleration(apptest, wait_job):
    """A generated 250 x 250 Laplacian (n = 62,500, above the 'auto' threshold) and Lanczos with
    its defaults: the run converges to the exact top values, the message says it used the
    polynomial, the form shows the choice, and the live records are in A's units (the last
    record's values are the answer's)."""
    if "lanczos" not in SOLVERS:
        pytest.skip("lanczos is not registered")
    at = apptest()
    at.radio(key="problem_mode").set_value("Generate").run()
    at.selectbox(key="gen_name").set_value("laplacian_2d").run()
    at.number_input(key="g_laplacian_2d_nx").set_value(250).run()
    at.number_input(key="g_laplacian_2d_ny").set_value(250).run()
    at.button(key="generate").click().run()
    at.selectbox(key="solver").set_value("lanczos").run()
    box = at.selectbox(key="p_lanczos_polynomial")
    assert box.value == "auto" and "off" in box.options
    at.number_input(key="k").set_value(4).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=120)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged", run.message
    assert "Chebyshev acceleration" in run.message
    np.testing.assert_allclose(run.result.eigenvalues.numpy(), run.reference, rtol=0, atol=1e-5)
    last = run.result.history[-1]
    assert last.extras.get("phase") in ("polynomial", "filter")
    np.testing.assert_allclose(np.sort(last.ritz_values.numpy()), np.sort(run.result.eigenvalues.numpy()), rtol=1e-5)
    _live_spec(at)  # the live panel is drawn
