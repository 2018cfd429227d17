"""AppTest (no browser): shift-invert (sigma) and spectrum slicing (an interval) through the Explore form, as a
new user would try them, and their runs on the History page (with a stored golub_kahan run beside them).

The exact eigenvalues come from the closed forms of the problems (the 2-D Laplacian's sums of
4 sin^2 terms, the Mikota pencil's i^2), never from the solver."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer import problems
from explorer.problems.samples import list_samples

pytestmark = pytest.mark.slow

SAMPLE = "laplacian2d_30x30"


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def _no_trouble(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _exact_2d(n: int = 30) -> np.ndarray:
    one = 4.0 * np.sin(np.arange(1, n + 1) * np.pi / (2 * (n + 1))) ** 2
    return np.sort((one[:, None] + one[None, :]).ravel())


def _lanczos(at, solver: str = "lanczos"):
    at.selectbox(key="sample").set_value(SAMPLE).run()
    at.selectbox(key="solver").set_value(solver).run()
    return at


def test_the_sigma_field_reads_off_and_which_follows_it(apptest):
    at = _lanczos(apptest())
    sigma = at.number_input(key="p_lanczos_sigma")
    assert sigma.value is None and sigma.proto.placeholder == "off (empty = no shift)"
    assert at.number_input(key="p_lanczos_lower").proto.placeholder == "off (empty = no interval)"
    assert at.number_input(key="p_lanczos_max_basis").proto.placeholder == "auto (solver picks)"
    assert at.session_state["which"] == "LA" and list(at.selectbox(key="which").options) == ["LA", "SA", "LM", "BE"]
    sigma.set_value(1.0).run()
    _no_trouble(at)
    # with sigma, which means nearest (the default), nearest above, nearest below
    assert at.session_state["which"] == "LM"
    assert list(at.selectbox(key="which").options) == ["LM: nearest sigma", "LA: nearest above sigma",
                                                       "SA: nearest below sigma"]
    assert any("Shift-invert at sigma = 1" in c for c in _texts(at.caption))
    at.selectbox(key="which").set_value("SA").run()
    assert at.session_state["which"] == "SA"
    at.number_input(key="p_lanczos_sigma").set_value(None).run()  # cleared: shift-invert off, which back
    _no_trouble(at)
    assert at.session_state["p_lanczos_sigma"] is None and at.session_state["which"] == "LA"
    assert not any("Shift-invert at" in c for c in _texts(at.caption))


@pytest.mark.parametrize("solver", ["lanczos", "lobpcg"])
def test_a_shift_invert_run_finds_the_eigenvalues_nearest_sigma(apptest, wait_job, solver):
    at = _lanczos(apptest(), solver)
    assert at.session_state["which"] == "LA"  # lobpcg alone has no LM; with sigma it has
    at.number_input(key=f"p_{solver}_sigma").set_value(1.0).run()
    assert at.session_state["which"] == "LM"
    at.number_input(key="tol").set_value(1e-9).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    assert not at.error, _texts(at.error)
    run = at.session_state["runs"][-1]
    assert run.status == "converged" and run.params["sigma"] == 1.0 and run.params["which"] == "LM"
    assert run.solver == solver
    exact = _exact_2d()
    nearest = exact[np.argsort(np.abs(exact - 1.0), kind="stable")[:4]]
    np.testing.assert_allclose(run.reference, nearest, rtol=1e-13)
    # |theta - lambda| <= ||r|| for each pair: the error can be no larger than the largest residual
    assert run.max_error is not None and run.max_error <= run.max_residual + 1e-14
    assert run.max_residual <= 1e-9 * 8  # tol times ||A|| at most
    assert any("Shift-invert at sigma = 1 (nearest" in t for t in _texts(at.success))
    table = at.dataframe[-1].value
    np.testing.assert_allclose(table["exact \u03bb"].to_numpy(), nearest, rtol=1e-13)
    live = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "yaxis4" in json.loads(c.proto.spec).get("layout", {}))
    assert any(str(t.get("name", "")).startswith("err") for t in live["data"])  # the error panel is drawn


def test_an_interval_run_says_how_many_and_finds_them_all(apptest, wait_job):
    at = _lanczos(apptest())
    at.number_input(key="k").set_value(6).run()
    at.number_input(key="p_lanczos_lower").set_value(1.0).run()
    at.number_input(key="p_lanczos_upper").set_value(1.2).run()
    _no_trouble(at)
    exact = _exact_2d()
    inside = exact[(exact >= 1.0) & (exact < 1.2)]
    assert inside.size == 16  # more than k = 6: the interval decides the count
    # which has no meaning for an interval; k is only a cap with its own field
    assert at.selectbox(key="which").disabled and at.session_state["which"] == "SA"
    cap = at.number_input(key="interval_k")
    assert cap.label == "at most (k)" and cap.value == 200
    assert any("Spectrum slicing: every eigenvalue in [1, 1.2)" in c for c in _texts(at.caption))
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged" and run.result.k == 16 and run.result.n_converged == 16
    np.testing.assert_allclose(run.reference, inside, rtol=1e-13)
    assert run.max_error <= run.max_residual + 1e-14
    message = " ".join(_texts(at.success))
    assert "so 16 eigenvalues lie in [1, 1.2)" in message and "all 16 found" in message and "none was missed" in message
    assert next(m.value for m in at.metric if m.label == "converged") == "16 / 16"
    # a cap below the count: refused with the number, and the run is logged as failed
    cap = at.number_input(key="interval_k")
    cap.set_value(10).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    assert at.session_state["runs"][-1].status == "failed"
    assert any("holds 16 eigenvalues" in e and "raise `k` to 16" in e for e in _texts(at.error))
    # clearing the interval gives k and which back, as they were
    at.number_input(key="p_lanczos_lower").set_value(None).run()
    at.number_input(key="p_lanczos_upper").set_value(None).run()
    assert not at.selectbox(key="which").disabled and at.session_state["which"] == "LA"
    assert at.number_input(key="k").value == 6


def test_settings_the_solver_will_refuse_are_flagged_in_the_form(apptest):
    at = _lanczos(apptest())
    at.number_input(key="p_lanczos_lower").set_value(1.0).run()
    assert any("needs both ends" in w for w in _texts(at.warning))
    at.number_input(key="p_lanczos_upper").set_value(1.2).run()
    at.number_input(key="p_lanczos_sigma").set_value(1.1).run()
    assert any("Both sigma and an interval are set" in w for w in _texts(at.warning))


def test_lanczos_with_sigma_solves_the_generalized_sample(apptest, wait_job):
    generalized = next((s.name for s in list_samples() if s.b_file and s.name.startswith("mikota")), None)
    if generalized is None:
        pytest.skip("no Mikota sample")
    at = apptest()
    at.selectbox(key="sample").set_value(generalized).run()
    at.selectbox(key="solver").set_value("lanczos").run()
    at.button(key="run").click().run()  # without sigma: the message says what to do
    wait_job(at)
    assert any("only with sigma or an interval" in e for e in _texts(at.error)), _texts(at.error)
    at.number_input(key="p_lanczos_sigma").set_value(9.5).run()
    at.number_input(key="tol").set_value(1e-10).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged", run.message
    np.testing.assert_allclose(run.reference, [9.0, 4.0, 16.0, 1.0], rtol=1e-8)  # i^2 nearest 9.5, in that order
    np.testing.assert_allclose(run.result.eigenvalues.numpy(), [9.0, 4.0, 16.0, 1.0], rtol=1e-8)


def test_history_shows_a_stored_svd_run_and_an_interval_run(apptest, wait_job):
    from explorer.cli import main

    # a golub_kahan run from the command line, into this test's store ($EXPLORER_STORE)
    assert main(["solve", "prescribed_singular_values:m=40,n=25", "-k", "3", "--tol", "1e-10", "-q"]) == 0
    at = _lanczos(apptest())
    at.number_input(key="p_lanczos_lower").set_value(1.0).run()
    at.number_input(key="p_lanczos_upper").set_value(1.2).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    fresh = apptest(page="pages/history.py")  # another session: both runs come from the store
    _no_trouble(fresh)
    frame = fresh.dataframe[0].value
    assert list(frame["solver"]) == ["golub_kahan", "lanczos"]
    assert list(frame["converged"]) == ["3/3", "16/16"]
    assert (frame["max_error"] < 1e-9).all()  # against the singular values and the interval's eigenvalues
    fresh.selectbox(key="history_detail").set_value(1).run()
    _no_trouble(fresh)
    labels = [m.label for m in fresh.metric]
    assert "max error |\u03c3\u2212\u03c3*|" in labels
    table = fresh.dataframe[-1].value
    assert "singular value \u03c3" in table.columns
    np.testing.assert_allclose(table["exact \u03c3"].to_numpy(), problems.prescribed_singular_values(40, 25)
                               .singular_values.numpy()[::-1][:3], rtol=1e-12)
    fresh.selectbox(key="history_detail").set_value(2).run()
    _no_trouble(fresh)
    assert any("so 16 eigenvalues lie in [1, 1.2)" in s for s in _texts(fresh.success))
    fresh.multiselect(key="history_pick").set_value([1, 2]).run()
    fresh.radio(key="history_metric").set_value("error").run()
    _no_trouble(fresh)
    spec = json.loads(fresh.get("plotly_chart")[0].proto.spec)
    assert [t["name"].split()[0] for t in spec["data"][:2]] == ["#1", "#2"]


def test_a_compare_run_with_sigma_is_judged_against_the_nearest(apptest, wait_job):
    at = apptest(page="pages/compare.py")
    at.selectbox(key="cmp_solver_0").set_value("lanczos").run()
    at.selectbox(key="cmp_solver_1").set_value("lanczos").run()
    at.number_input(key="cmp1_lanczos_sigma").set_value(1.0).run()  # which stays LA: the nearest above sigma
    at.number_input(key="cmp_k").set_value(2).run()
    at.button(key="cmp_run").click().run()
    wait_job(at, "compare", timeout=90, poll=0.5)
    _no_trouble(at)
    plain, shifted = [run for run in at.session_state["runs"] if run.page == "compare"]
    exact = _exact_2d()
    np.testing.assert_allclose(plain.reference, exact[::-1][:2])
    np.testing.assert_allclose(shifted.reference, np.sort(exact[exact >= 1.0])[:2])
    assert shifted.status == "converged" and shifted.max_error <= shifted.max_residual + 1e-14


def _error_traces(at) -> list[np.ndarray]:
    """The y values of the live panel's error traces ("err i"), decoded from plotly's typed arrays."""
    import base64

    live = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "yaxis4" in json.loads(c.proto.spec).get("layout", {}))
    out = []
    for trace in live["data"]:
        if str(trace.get("name", "")).startswith("err"):
            y = trace["y"]
            out.append(np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])) if isinstance(y, dict)
                       else np.asarray(y, dtype=float))
    return out


@pytest.mark.parametrize("solver", ["lanczos", "lobpcg"])
@pytest.mark.parametrize("mode", ["sigma", "interval"])
def test_the_live_error_panel_of_an_interior_run_ends_at_the_solution(apptest, wait_job, solver, mode):
    """LOBPCG near sigma runs above sigma, then below; a slicing run solves one shift after another. Every record
    is judged against what its own pass looks for, so a converged run's error curves all end below tol
    (against the result's eigenvalues, the values of LOBPCG's other pass and of the outer shifts would stay
    0.04 - 0.16 off: 'never converged')."""
    at = _lanczos(apptest(), solver)
    if mode == "sigma":
        at.number_input(key=f"p_{solver}_sigma").set_value(1.0).run()
    else:
        at.number_input(key=f"p_{solver}_lower").set_value(1.0).run()
        at.number_input(key=f"p_{solver}_upper").set_value(1.2).run()
    at.number_input(key="tol").set_value(1e-9).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=120)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert run.status == "converged", run.message
    errors = _error_traces(at)
    assert len(errors) == (4 if mode == "sigma" else 16)
    # |theta - lambda| <= ||r|| <= tol ||A|| (||A|| < 8) for a converged pair
    assert all(e[-1] < 8e-9 for e in errors), [float(e[-1]) for e in errors]


def test_chebyshev_takes_an_interval_through_its_band_pass_filter(apptest, wait_job):
    at = _lanczos(apptest(), "chebyshev")
    at.number_input(key="p_chebyshev_lower").set_value(1.0).run()
    assert any("needs both ends" in w for w in _texts(at.warning))
    at.number_input(key="p_chebyshev_upper").set_value(1.2).run()
    _no_trouble(at)
    assert at.selectbox(key="which").disabled and at.session_state["which"] == "SA"
    assert any("band-pass Chebyshev-Jackson filter" in c for c in _texts(at.caption))
    at.number_input(key="tol").set_value(1e-9).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=120)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    exact = _exact_2d()
    inside = exact[(exact >= 1.0) & (exact < 1.2)]
    assert run.status == "converged", run.message
    np.testing.assert_allclose(run.reference, inside, rtol=1e-13)
    assert run.result.k == 16 and run.max_error <= run.max_residual + 1e-14
    assert "all 16 found" in run.message and "inertia" in run.message
    # early records may hold more Ritz values inside the interval than it has eigenvalues; the last one holds 16
    final = [float(e[-1]) for e in _error_traces(at) if np.isfinite(e[-1])]
    assert len(final) == 16 and max(final) < 8e-9
    # the records carry the degree and the interval (the run table's extras)
    record = run.records[-1]
    assert record.extras["degree"] > 20 and (record.extras["pass_low"], record.extras["pass_high"]) == (1.0, 1.2)


def test_the_model_page_keeps_the_interval_for_chebyshev_only(apptest):
    at = apptest(page="pages/model.py")
    at.selectbox(key="model_solver").set_value("chebyshev").run()
    _no_trouble(at)
    keys = {str(n.key) for n in at.number_input}
    assert {"model_p_chebyshev_lower", "model_p_chebyshev_upper"} <= keys
    assert not any("No interval here" in c for c in _texts(at.caption))
    at.selectbox(key="model_solver").set_value("lobpcg").run()
    keys = {str(n.key) for n in at.number_input}
    assert "model_p_lobpcg_lower" not in keys and any("No interval here" in c for c in _texts(at.caption))
