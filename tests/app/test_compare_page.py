"""AppTest (no browser): the Compare page runs two configurations to the end and reports on them."""

from __future__ import annotations

import json
import time

import pytest

from explorer.ui.compare_form import PRESETS, available_presets

pytestmark = pytest.mark.slow

PAGE = "pages/compare.py"
KEY = "compare"


def _no_trouble(at) -> None:  # noqa: ANN001
    assert not at.exception, [e.value for e in at.exception]


def _table(at, key: str):  # noqa: ANN001, ANN202
    """The results table ("cmp_table": has a "run" column) or the angle table ("cmp_angles")."""
    frames = [d.value for d in at.dataframe]
    picked = [f for f in frames if ("run" in f.columns) == (key == "cmp_table")]
    assert picked, f"no dataframe {key!r} among {[list(f.columns) for f in frames]}"
    return picked[0]


def test_every_preset_is_runnable() -> None:
    from explorer.solvers import SOLVERS

    for name, (which, runs) in PRESETS.items():
        for solver, params in runs:
            if solver in SOLVERS:
                assert which in SOLVERS[solver].which, (name, solver)
                for key, value in params.items():
                    SOLVERS[solver].param(key).validate(value)


def test_compare_page_opens_with_a_preset(apptest) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    _no_trouble(at)
    assert at.selectbox(key="cmp_preset").value in available_presets()
    assert at.button(key="cmp_run").disabled is False
    assert any("Compare solvers" in t.value for t in at.title)
    assert at.number_input(key="cmp_count").value == len(PRESETS[at.selectbox(key="cmp_preset").value][1])


def test_two_configurations_run_to_the_end_and_fill_the_table(apptest, wait_job) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    at.selectbox(key="cmp_preset").set_value("LOBPCG: basic vs ortho").run()
    at.number_input(key="cmp_k").set_value(3).run()
    at.number_input(key="cmp_budget").set_value(600).run()
    at.button(key="cmp_run").click().run()
    _no_trouble(at)
    assert "compare_error" not in at.session_state or not at.session_state["compare_error"]
    wait_job(at, KEY, timeout=90, poll=0.5)
    _no_trouble(at)
    table = _table(at, "cmp_table")
    assert list(table["run"]) == ["lobpcg(method=basic)", "lobpcg(method=ortho)"]
    assert set(table["status"]) <= {"converged", "budget reached", "max_iter reached"}
    assert (table["matvecs"] > 0).all()
    assert table["matvecs"].max() <= 600 + 3 * 8  # the budget, overshot by at most one block step
    assert table["max rel. error"].notna().all()  # the sample's exact spectrum is known
    angles = _table(at, "cmp_angles")
    assert angles.shape == (2, 2)
    assert any("Diagnosis" in h.value for h in at.subheader)
    # the three overlays were drawn from the runs' records
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    xlabels = [c["layout"]["xaxis"]["title"]["text"] for c in charts]
    ylabels = [c["layout"]["yaxis"]["title"]["text"] for c in charts]
    assert xlabels.count("matvecs") == 2 and "seconds" in xlabels
    assert any("V" in y for y in ylabels)  # the orthogonality overlay
    assert all(len(c["data"]) >= 2 for c in charts)  # one curve per run (+ tol / sqrt(eps) lines)
    # both runs went to the session's run log (the History page)
    logged = [run for run in at.session_state["runs"] if run.page == KEY]
    assert [run.extra["label"] for run in logged] == list(table["run"])
    # one line per Ritz value instead of the worst one: k = 3 lines per run
    at.radio(key="cmp_curves").set_value("every pair").run()
    _no_trouble(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == 2 * 3


def test_a_bad_configuration_is_a_message_not_a_crash(apptest) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    at.selectbox(key="cmp_preset").set_value("LOBPCG: basic vs ortho").run()
    at.selectbox(key="cmp_which").set_value("LM").run()  # LOBPCG solves LA or SA only
    at.button(key="cmp_run").click().run()
    _no_trouble(at)
    assert at.session_state["compare_error"] and "which" in at.session_state["compare_error"]
    assert any("which" in e.value for e in at.error)


def test_stop_ends_the_comparison_and_keeps_the_partial_results(apptest, wait_job, get_job) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    at.selectbox(key="cmp_preset").set_value("LOBPCG: basic vs ortho").run()
    at.number_input(key="cmp_budget").set_value(0).run()  # no budget
    at.number_input(key="cmp_tol").set_value(1e-15).run()  # unreachable: runs until max_iter
    at.number_input(key="cmp_max_iter").set_value(100_000).run()
    at.button(key="cmp_run").click().run()
    job = get_job(at, KEY)
    deadline = time.monotonic() + 30
    while job.alive and not job.view().records and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    at.button(key="cmp_stop").click().run()
    wait_job(at, KEY, timeout=30)
    _no_trouble(at)
    table = _table(at, "cmp_table")
    assert "stopped" in set(table["status"]) or "skipped" in set(table["status"])


def test_compare_settings_survive_a_visit_to_another_page(apptest) -> None:  # noqa: ANN001
    at = apptest(page="pages/compare.py")
    at.number_input(key="cmp_budget").set_value(1234).run()
    at.number_input(key="cmp_count").set_value(3).run()
    at.radio(key="cmp_curves").set_value("every pair").run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page("pages/history.py").run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="cmp_budget").value == 1234
    assert at.number_input(key="cmp_count").value == 3
    assert at.radio(key="cmp_curves").value == "every pair"


def test_a_rectangular_problem_gets_the_svd_presets_and_runs(apptest, wait_job) -> None:  # noqa: ANN001
    from explorer.problems.sources import ProblemSource
    from explorer.solvers import SOLVERS

    at = apptest(page=PAGE)
    at.session_state["problem_source"] = ProblemSource.generated(
        "prescribed_singular_values", {"m": 200, "n": 80, "spectrum": "geometric"})
    at.run()
    _no_trouble(at)
    assert set(at.selectbox(key="cmp_preset").options) == set(available_presets("svd"))
    assert set(at.selectbox(key="cmp_solver_0").options) == {s.label for s in SOLVERS.values() if s.kind == "svd"}
    at.selectbox(key="cmp_preset").set_value("Golub-Kahan: full vs one-sided re-orthogonalization").run()
    at.number_input(key="cmp_k").set_value(3).run()
    at.button(key="cmp_run").click().run()
    _no_trouble(at)
    assert not at.session_state["compare_error"], at.session_state["compare_error"]
    wait_job(at, KEY, timeout=90, poll=0.5)
    _no_trouble(at)
    table = _table(at, "cmp_table")
    assert list(table["run"]) == ["golub_kahan(reorthogonalization=full)", "golub_kahan(reorthogonalization=one-sided)"]
    assert set(table["status"]) == {"converged"}
    assert (table["max rel. error"] <= 1e-5).all()  # against the exact singular values 1, 0.8, 0.64


def _exact_2d(n: int = 30):  # noqa: ANN202
    """The closed form of the default sample (the 2-D Laplacian on a 30 x 30 grid)."""
    import numpy as np

    one = 4.0 * np.sin(np.arange(1, n + 1) * np.pi / (2 * (n + 1))) ** 2
    return np.sort((one[:, None] + one[None, :]).ravel())


def test_a_comparison_near_sigma_judges_every_run_against_the_nearest(apptest, wait_job) -> None:  # noqa: ANN001
    import base64

    import numpy as np

    at = apptest(page=PAGE)
    at.selectbox(key="sample").set_value("laplacian2d_30x30").run()
    at.selectbox(key="cmp_preset").set_value("Lanczos vs LOBPCG").run()
    assert at.session_state["cmp_which"] == "LA"
    at.number_input(key="cmp_sigma").set_value(1.0).run()
    _no_trouble(at)
    # which follows sigma: the nearest, on either side or one
    assert at.session_state["cmp_which"] == "LM"
    assert list(at.selectbox(key="cmp_which").options) == ["LM: nearest sigma", "LA: nearest above sigma",
                                                           "SA: nearest below sigma"]
    assert any("Near sigma = 1" in c.value for c in at.caption)
    assert not at.warning  # both solvers take a sigma
    at.number_input(key="cmp_tol").set_value(1e-9).run()
    at.number_input(key="cmp_budget").set_value(0).run()
    at.button(key="cmp_run").click().run()
    assert not at.session_state["compare_error"]
    wait_job(at, KEY, timeout=120, poll=0.5)
    _no_trouble(at)
    exact = _exact_2d()
    nearest = exact[np.argsort(np.abs(exact - 1.0), kind="stable")[:4]]
    table = _table(at, "cmp_table")
    assert list(table["status"]) == ["converged", "converged"]
    assert (table["max rel. error"] < 8e-9 / nearest.min()).all()  # |theta - lambda| <= ||r|| <= tol ||A||
    logged = [run for run in at.session_state["runs"] if run.page == KEY]
    for run in logged:
        assert run.params["sigma"] == 1.0 and run.params["which"] == "LM"
        np.testing.assert_allclose(np.sort(run.reference), np.sort(nearest), rtol=1e-13)
    # each run's detail panel: the error of every Ritz value ends below tol (LOBPCG's pass above sigma
    # is judged against the nearest above, not against the result's values below it)
    details = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    details = [d for d in details if "yaxis4" in d.get("layout", {})]
    assert len(details) == 2
    for spec in details:
        errors = [t for t in spec["data"] if str(t.get("name", "")).startswith("err")]
        assert len(errors) == 4
        for trace in errors:
            y = trace["y"]
            y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])) if isinstance(y, dict) \
                else np.asarray(y, dtype=float)
            assert y[-1] < 1e-9 * 8
    # no missed eigenvalue: the diagnosis knows the run looked near sigma
    assert not any("Missed eigenvalue" in e.value for e in at.error)
    # a solver without sigma: flagged in its column, and refused with the alternatives
    at.selectbox(key="cmp_solver_1").set_value("power_iteration").run()
    assert any("has no sigma" in w.value for w in at.warning)
    at.button(key="cmp_run").click().run()
    assert "power_iteration cannot look for the eigenvalues nearest sigma" in at.session_state["compare_error"]
    assert any("lobpcg, lanczos, eigh" in e.value for e in at.error)
    # clearing sigma gives the end of the spectrum back
    at.number_input(key="cmp_sigma").set_value(None).run()
    _no_trouble(at)
    assert at.session_state["cmp_which"] == "LA" and not any("has no sigma" in w.value for w in at.warning)


def test_runs_looking_for_different_eigenvalues_get_a_note(apptest) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    at.selectbox(key="sample").set_value("laplacian2d_30x30").run()
    at.selectbox(key="cmp_preset").set_value("Lanczos vs LOBPCG").run()
    at.number_input(key="cmp0_lanczos_sigma").set_value(1.0).run()  # only run 1 near sigma
    _no_trouble(at)
    assert any("look for different eigenvalues" in w.value for w in at.warning)
    at.number_input(key="cmp0_lanczos_sigma").set_value(None).run()
    assert not any("look for different eigenvalues" in w.value for w in at.warning)
