"""The Chebyshev-filtering lesson: its charts say what the text claims, checked against the closed-form
spectrum of the 1-D Laplacian (not against the solver)."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.solvers.chebyshev import filter_values
from explorer.teaching import LESSONS, run_lesson
from explorer.teaching.chebyshev import predicted_errors, subspace_rates


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    lesson = LESSONS["chebyshev"]
    setup = lesson.setup({"n": 200, "k": 3, "degree": 16, "low_degree": 6})
    return setup, run_lesson(setup)


def test_the_lesson_is_on_the_learn_page_before_shift_invert() -> None:
    assert list(LESSONS)[-2:] == ["chebyshev", "shift_invert"]
    assert LESSONS["chebyshev"].solvers == ("chebyshev", "lanczos")


def test_the_filter_chart_amplifies_the_wanted_eigenvalues_most(demo) -> None:  # type: ignore[no-untyped-def]
    setup, outcomes = demo
    exact = setup.problem.eigenvalues.numpy()
    chart = next(c for c in setup.charts(outcomes) if c.key == "chebyshev_filter")
    series = {s.name: s for s in chart.series}
    wanted = series["the 3 wanted eigenvalues"]
    others = series["eigenvalues (unwanted)"]
    np.testing.assert_array_equal(wanted.x, exact[:3])
    assert wanted.y.min() > others.y.max()  # every wanted direction beats every unwanted one
    cut = next(s for s in chart.series if s.name.startswith("cut a"))
    assert exact[2] < cut.x[0] < exact[-1]  # the cut sits between the wanted and the top
    curves = [s for s in chart.series if s.name.startswith("|p_m(t)|")]
    assert len(curves) == 2  # first and last iteration


def test_the_predicted_rate_matches_the_measured_errors(demo) -> None:  # type: ignore[no-untyped-def]
    setup, outcomes = demo
    exact = setup.problem.eigenvalues.numpy()
    run = outcomes[1]
    assert run.result.status.value == "converged"
    rates = subspace_rates(exact, run.records, 3, 11)[1:, 2]
    assert np.all((rates > 0) & (rates < 1))
    errors = np.abs(np.asarray([float(r.ritz_values[2]) for r in run.records]) - exact[2])
    usable = np.flatnonzero(errors > 1e-12 * exact[-1])
    observed = (errors[usable[-1]] / errors[usable[0]]) ** (1.0 / (usable[-1] - usable[0]))
    promised = float(np.exp(np.mean(np.log(rates[: usable[-1]] ** 2))))
    # the rate is asymptotic: within a factor 3 either way per iteration
    assert promised / 3 <= observed <= promised * 3, (observed, promised)


def test_rates_and_predictions_from_first_principles() -> None:
    from types import SimpleNamespace

    spectrum = np.array([0.1, 0.2, 1.0, 2.0, 3.0])
    record = SimpleNamespace(extras={"degree": 5, "filter_low": 0.5, "filter_high": 3.0, "scale_point": 0.1})
    rho = subspace_rates(spectrum, [record], wanted=2, block=2)[0]
    p = np.abs(filter_values(spectrum, 5, 0.5, 3.0, 0.1))
    np.testing.assert_allclose(rho, p[2:].max() / p[:2])
    np.testing.assert_allclose(predicted_errors(1.0, np.array([0.5, 0.5, 0.1])), [1.0, 0.25, 0.0025])


def test_notes_report_each_run(demo) -> None:  # type: ignore[no-untyped-def]
    setup, outcomes = demo
    notes = setup.notes(outcomes)
    assert sum("converged" in note for note in notes) == 3
    assert any("promised" in note for note in notes)


def test_the_band_pass_chart_shows_the_jackson_filter_against_the_gibbs_overshoot(demo) -> None:  # type: ignore[no-untyped-def]
    setup, outcomes = demo
    n = setup.problem.operator.shape[0]
    exact = 2.0 - 2.0 * np.cos(np.arange(1, n + 1) * np.pi / (n + 1))  # closed form, ascending
    chart = next(c for c in setup.charts(outcomes) if c.key == "chebyshev_bandpass")
    series = {s.name.split(",")[0]: s for s in chart.series}
    damped, plain = series["Jackson-damped"], series["plain truncation (Gibbs)"]
    assert damped.y.min() >= -1e-12 and damped.y.max() <= 1 + 1e-12  # a positive kernel: within [0, 1]
    assert plain.y.max() > 1.02 or plain.y.min() < -0.02  # the undamped series overshoots
    inside = next(s for s in chart.series if s.name.startswith("the ") and "eigenvalues in [1, 1.5)" in s.name)
    np.testing.assert_allclose(inside.x, exact[(exact >= 1.0) & (exact < 1.5)], rtol=1e-12)
    assert inside.y.min() > 0.3  # every wanted direction kept (about 1/2 at the ends, 1 inside)
    outside = series["eigenvalues outside"]
    assert np.all(outside.y[np.abs(outside.x - 1.25) > 0.6] < 1e-2)  # far ones damped
