"""AppTest (no browser): the Model page loads the sample, runs each analysis, and explains bad input."""

from __future__ import annotations

import json

import pytest

from explorer.models.samples import MODEL_SAMPLE_DIR

pytestmark = pytest.mark.slow

PAGE = "pages/model.py"


def _no_trouble(at) -> None:  # noqa: ANN001
    assert not at.exception, [e.value for e in at.exception]


def _metrics(at) -> dict[str, str]:  # noqa: ANN001
    return {m.label: m.value for m in at.metric}


def test_sample_hessian_top_eigenvalues(apptest, wait_job) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    _no_trouble(at)
    assert at.radio(key="model_source").value == "sample" and at.selectbox(key="model_sample").value == "mlp"
    assert any("1,732 parameters" in m.value for m in at.markdown)
    assert at.number_input(key="model_k").value == 5 and at.selectbox(key="model_dtype").value == "float32"
    at.button(key="model_run").click().run()
    _no_trouble(at)
    wait_job(at, "model", timeout=60, poll=0.2)
    _no_trouble(at)
    metrics = _metrics(at)
    assert metrics["converged"] == "5 / 5"
    # the sample manifest's dense-Hessian eigenvalues are the reference: float32 HVPs, tol 1e-5
    assert float(metrics["max error |\u03b8\u2212\u03bb|"]) < 1e-4
    run = at.session_state["runs"][-1]
    assert run.page == "model" and run.status == "converged" and run.n == 1732
    # per-layer shares of the eigenvectors were drawn
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heat = [c for c in charts if c["data"] and c["data"][0].get("type") == "heatmap"]
    assert heat and heat[0]["data"][0]["y"] == ["layers.0", "layers.2", "layers.4"]


def test_density_trace_and_weights(apptest, wait_job) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    at.radio(key="model_analysis").set_value("slq").run()
    at.number_input(key="model_slq_probes").set_value(2).run()
    at.number_input(key="model_slq_steps").set_value(30).run()
    at.button(key="model_run").click().run()
    wait_job(at, "model", timeout=60, poll=0.2)
    _no_trouble(at)
    metrics = _metrics(at)
    assert metrics["HVPs"] == "60"
    top = {e["name"]: e for e in json.loads((MODEL_SAMPLE_DIR / "manifest.json").read_text())["models"]}["mlp"]
    # the largest SLQ node after 30 steps is the top eigenvalue (float32 Lanczos, full reorthogonalization)
    assert abs(float(metrics["largest node (\u2248 \u03bb_max)"]) - top["hessian_top5"][0]) < 1e-3

    at.radio(key="model_analysis").set_value("trace").run()
    at.radio(key="model_curvature").set_value("ggn").run()
    at.text_input(key="model_params").set_value("layers.4.*").run()
    at.number_input(key="model_tr_probes").set_value(30).run()
    at.button(key="model_exact").click().run()  # dense GGN block (n = 132) for the reference
    _no_trouble(at)
    assert any("Known: 132 eigenvalues" in s.value for s in at.success)
    at.button(key="model_run").click().run()
    wait_job(at, "model", timeout=60, poll=0.2)
    _no_trouble(at)
    metrics = _metrics(at)
    assert metrics["HVPs"] == "30"
    assert any("Gauss-Newton matrix" in c.value and "132 of 1732 parameters" in c.value for c in at.caption)
    exact = [float(c.value.split(":")[1]) for c in at.caption if c.value.startswith("Exact trace (dense)")]
    # within 4 standard errors of the dense trace (a seeded run; p ~ 6e-5 for an unlucky seed)
    assert exact and abs(float(metrics["trace estimate"]) - exact[0]) <= 4 * float(metrics["standard error"])

    at.selectbox(key="model_w_tensor").set_value("layers.2.weight").run()
    at.button(key="model_w_run").click().run()
    wait_job(at, "model_weights", timeout=60, poll=0.2)
    _no_trouble(at)
    assert any("converged" in s.value for s in at.success)
    table = [d.value for d in at.dataframe if "|error|" in d.value.columns]
    assert table and float(table[0]["|error|"].max()) < 1e-6


def test_bad_inputs_are_messages(apptest) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    at.text_input(key="model_params").set_value("conv*").run()
    assert any("selects no trainable parameter" in w.value for w in at.warning)
    at.button(key="model_run").click().run()
    _no_trouble(at)
    assert any("selects no trainable parameter" in e.value for e in at.error)
    at.radio(key="model_source").set_value("upload").run()
    _no_trouble(at)
    bogus = b"\x80\x04K\x01."  # a pickle, not a .pt2 archive
    at.file_uploader(key="model_upload_model").set_value(("model.pt2", bogus, "application/octet-stream")).run()
    _no_trouble(at)
    assert any("torch.save" in e.value or "not a .pt2" in e.value for e in at.error)
    data = (MODEL_SAMPLE_DIR / "cnn_data.pt").read_bytes()
    model = (MODEL_SAMPLE_DIR / "mlp.pt2").read_bytes()
    at.file_uploader(key="model_upload_model").set_value(("mlp.pt2", model, "application/octet-stream")).run()
    at.file_uploader(key="model_upload_data").set_value(("cnn_data.pt", data, "application/octet-stream")).run()
    _no_trouble(at)
    assert at.text_input(key="model_params").value == "conv*"  # settings are kept across source changes
    at.text_input(key="model_params").set_value("").run()
    at.button(key="model_run").click().run()
    _no_trouble(at)
    assert any("does not fit the model" in e.value for e in at.error)


def test_settings_survive_a_visit_to_another_page(apptest) -> None:  # noqa: ANN001
    at = apptest()  # app.py: the page list, so switch_page works both ways
    at.switch_page("pages/model.py").run()
    _no_trouble(at)
    at.radio(key="model_analysis").set_value("slq").run()
    at.text_input(key="model_params").set_value("layers.4.*").run()
    at.selectbox(key="model_sample").set_value("cnn").run()
    at.switch_page("pages/history.py").run()
    _no_trouble(at)
    at.switch_page("pages/model.py").run()
    _no_trouble(at)
    assert at.radio(key="model_analysis").value == "slq"
    assert at.text_input(key="model_params").value == "layers.4.*"
    assert at.selectbox(key="model_sample").value == "cnn"


def test_sigma_on_the_hessian_runs_through_minres_in_float64(apptest, wait_job) -> None:  # noqa: ANN001
    """The Hessian is matrix-free: the sigma field is there (an inner MINRES per application), the interval
    fields are not (inertia slicing needs a factorization; a caption says why), float32 is refused before it
    would stall, and a float64 run finds the 5 eigenvalues nearest sigma of the dense Hessian."""
    import numpy as np

    at = apptest(page=PAGE)
    _no_trouble(at)
    keys = {str(n.key) for n in at.number_input}
    assert "model_p_lanczos_sigma" in keys and "model_p_lanczos_lower" not in keys
    assert list(at.selectbox(key="model_p_lanczos_factorization").options) == ["auto", "minres", "cg"]
    assert any("No interval here" in c.value and "LDL^T" in c.value for c in at.caption)
    at.number_input(key="model_p_lanczos_sigma").set_value(0.5).run()
    _no_trouble(at)
    assert at.session_state["model_which"] == "LM"
    assert any("inner MINRES solve" in c.value for c in at.caption)
    assert any("float32" in w.value and "float64" in w.value for w in at.warning)
    at.button(key="model_run").click().run()  # refused at once, with the fix
    _no_trouble(at)
    assert not [r for r in at.session_state["runs"] if r.page == "model"]
    assert any("Switch dtype to float64" in e.value for e in at.error)
    at.selectbox(key="model_dtype").set_value("float64").run()
    assert not any("float32" in w.value for w in at.warning)
    at.button(key="model_exact").click().run()  # the dense spectrum: the reference near sigma
    _no_trouble(at)
    at.button(key="model_run").click().run()
    wait_job(at, "model", timeout=240, poll=0.5)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged", run.message
    assert "MINRES" in run.message and run.params["sigma"] == 0.5
    exact = next(iter(at.session_state["_model_exact"].values()))
    nearest = exact[np.argsort(np.abs(exact - 0.5), kind="stable")[:5]]
    np.testing.assert_allclose(np.sort(run.reference), np.sort(nearest), rtol=1e-12)
    tol = run.params["tol"]
    # |theta - lambda| <= ||r|| <= tol * ||H|| for converged pairs (||H|| = max |lambda| of the dense spectrum)
    assert run.max_error <= tol * float(np.abs(exact).max())


def test_an_interval_of_the_hessian_through_the_chebyshev_band_pass_filter(apptest, wait_job) -> None:  # noqa: ANN001
    """Matrix-free: no inertia, so chebyshev estimates the count from the filter's trace and says so; the
    eigenvalues it returns are the dense Hessian's in the interval."""
    import numpy as np

    at = apptest(page=PAGE)
    at.selectbox(key="model_solver").set_value("chebyshev").run()
    at.number_input(key="model_p_chebyshev_lower").set_value(0.4).run()
    at.number_input(key="model_p_chebyshev_upper").set_value(0.6).run()
    _no_trouble(at)
    assert any("band-pass Chebyshev-Jackson filter" in c.value for c in at.caption)
    at.number_input(key="model_tol").set_value(1e-4).run()  # float32 HVPs
    at.button(key="model_exact").click().run()
    at.button(key="model_run").click().run()
    wait_job(at, "model", timeout=240, poll=0.5)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged", run.message
    exact = next(iter(at.session_state["_model_exact"].values()))
    inside = np.sort(exact[(exact >= 0.4) & (exact < 0.6)])
    np.testing.assert_allclose(run.reference, inside, rtol=1e-12)
    values = np.sort(run.result.eigenvalues.double().numpy())
    assert values.size == inside.size
    # |theta - lambda| <= ||r|| <= tol ||H||, plus float32 HVP rounding (~n eps ||H||)
    assert np.abs(values - inside).max() <= (1e-4 + 1732 * 1.2e-7) * float(np.abs(exact).max())
    assert "stochastic estimate" in run.message and "not proven" in run.message
