"""The shift-invert lesson: its theory curves against closed forms (the 1-D Laplacian's eigenvalues and
eigenvectors, the Chebyshev polynomial), and its runs against those curves (not against the solver)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explorer import problems
from explorer.analysis import theory
from explorer.teaching import LESSONS, run_lesson
from explorer.teaching.shift_invert import extreme_ritz_errors, laplacian_1d_eigenvector

N = 200


def _closed_form(n: int) -> np.ndarray:
    j = np.arange(1, n + 1)
    return 4.0 * np.sin(j * np.pi / (2 * (n + 1))) ** 2  # ascending


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    setup = LESSONS["shift_invert"].setup({"n": N, "sigma": 0.0, "steps": 250, "seed": 0})
    return setup, run_lesson(setup)


def test_the_lesson_is_the_eighth_and_needs_lanczos_only() -> None:
    assert list(LESSONS).index("shift_invert") == 7 == len(LESSONS) - 1
    assert LESSONS["shift_invert"].solvers == ("lanczos",)


def test_the_eigenvectors_are_the_closed_form_ones() -> None:
    A = problems.laplacian_1d(50).operator
    lam = _closed_form(50)
    for j in (1, 7, 50):
        u = laplacian_1d_eigenvector(50, j)
        assert abs(np.linalg.norm(u) - 1) < 1e-14
        Au = A.matvec(__import__("torch").from_numpy(u)).numpy()
        np.testing.assert_allclose(Au, lam[j - 1] * u, atol=1e-13)


def test_transformed_spectrum_and_bound_against_the_closed_form() -> None:
    lam = _closed_form(N)
    np.testing.assert_allclose(theory.shift_invert_spectrum(lam, 0.0), 1.0 / lam, rtol=1e-15)
    assert theory.shift_invert_target(lam, 0.0) == (pytest.approx(lam[0]), "LA")
    assert theory.shift_invert_target(lam, 2.5)[1] in ("LA", "SA")
    with pytest.raises(ValueError, match="is an eigenvalue"):
        theory.shift_invert_spectrum(lam, float(lam[3]))
    # KPS on theta = 1/lambda, by hand: theta_1 = 1/lambda_1 the top, theta_2 the next, theta_n = 1/lambda_n the bottom
    t1, t2, tn = 1 / lam[0], 1 / lam[1], 1 / lam[-1]
    gamma = 1 + 2 * (t1 - t2) / (t2 - tn)
    tan0, ms = 3.0, np.arange(2, 9)
    b = (t1 - tn) * (tan0 / np.cosh((ms - 1) * np.arccosh(gamma))) ** 2
    expected = np.where(b < t1, b / (t1 * (t1 - b)), np.inf)
    np.testing.assert_allclose(theory.shift_invert_bound_curve(lam, 0.0, tan0, ms), expected, rtol=1e-12)
    # the per-step factor: 1 / (gamma + sqrt(gamma^2 - 1)), about 1 - 2 sqrt(g) for a small relative gap g
    assert theory.kps_rate(np.sort(1 / lam)[::-1]) == pytest.approx(1 / (gamma + math.sqrt(gamma ** 2 - 1)), rel=1e-14)
    g = (lam[1] - lam[0]) / (lam[-1] - lam[1])
    assert theory.kps_rate(np.sort(-lam)[::-1]) == pytest.approx(1 - 2 * math.sqrt(g), abs=2 * g)


def test_both_runs_stay_under_their_bounds_and_shift_invert_is_far_faster(demo) -> None:  # type: ignore[no-untyped-def]
    setup, outcomes = demo
    lam = _closed_form(N)
    np.testing.assert_allclose(setup.problem.eigenvalues.numpy(), lam, rtol=1e-14)
    plain, shifted = outcomes
    assert plain.result.status.value == "converged" and shifted.result.status.value == "converged"
    chart = next(c for c in setup.charts(outcomes) if c.key == "shift_invert_rate")
    series = {s.name: s for s in chart.series}
    floor = 1e3 * np.finfo(float).eps * lam[-1]
    steps_to = {}
    for run in (plain, shifted):
        measured, bound = series[f"{run.label}: measured"], series[f"{run.label}: KPS bound"]
        finite = np.isfinite(bound.y)
        assert finite.sum() >= 3, "the bound says something at a few steps at least"
        assert np.all(measured.y[finite] <= bound.y[finite] + floor)  # the theorem, in exact arithmetic
        steps_to[run.index] = int(measured.x[np.flatnonzero(measured.y <= 1e-10 * lam[-1])[0]])
    # the transform's gap: a few steps where A needs about n (finite termination of Lanczos)
    assert steps_to[1] <= 10 and steps_to[0] >= N // 2, steps_to
    np.testing.assert_allclose(float(shifted.result.eigenvalues[0]), lam[0], rtol=1e-9)


def test_an_interior_shift_finds_the_nearest_eigenvalue_at_the_predicted_speed() -> None:
    setup = LESSONS["shift_invert"].setup({"n": 300, "sigma": 2.5, "steps": 60})
    outcomes = run_lesson(setup)
    lam = _closed_form(300)
    nearest = lam[np.argmin(np.abs(lam - 2.5))]
    shifted = outcomes[1]
    assert shifted.result.status.value == "converged"
    assert abs(float(shifted.result.eigenvalues[0]) - nearest) <= float(shifted.result.residual_norms[0]) + 1e-14
    ms, err = extreme_ritz_errors(shifted.records, nearest, sigma=2.5, end="LA" if nearest > 2.5 else "SA")
    tan0 = theory.tan_angle(setup.configs[1].params["X0"].numpy(),
                            laplacian_1d_eigenvector(300, int(np.argmin(np.abs(lam - 2.5))) + 1))
    bound = theory.shift_invert_bound_curve(lam, 2.5, tan0, ms)
    assert np.all(err <= bound + 1e3 * np.finfo(float).eps * 4)
    # the plain run of the same length is nowhere near the lowest eigenvalue
    _, plain_err = extreme_ritz_errors(outcomes[0].records, lam[0], end="SA")
    assert plain_err[-1] > 1e3 * err[-1] or err[-1] < 1e-14


def test_charts_and_notes(demo) -> None:  # type: ignore[no-untyped-def]
    setup, outcomes = demo
    spectrum = next(c for c in setup.charts(outcomes) if c.key == "shift_invert_spectrum")
    wanted = next(s for s in spectrum.series if s.name.startswith("the eigenvalue nearest sigma"))
    np.testing.assert_allclose(wanted.x, [_closed_form(N)[0]])
    np.testing.assert_allclose(wanted.y, [1 / _closed_form(N)[0]], rtol=1e-12)
    notes = setup.notes(outcomes)
    assert sum("converged" in note for note in notes) == 2 and any("rho^2" in note for note in notes)
    assert all("exceeded the bound at 0 step(s)" in note for note in notes if "converged" in note)


def test_a_shift_at_an_eigenvalue_is_refused_with_the_fix() -> None:
    lam = _closed_form(N)
    with pytest.raises(ValueError, match="is an eigenvalue of this Laplacian.*move sigma"):
        LESSONS["shift_invert"].setup({"sigma": float(lam[66])})  # 4 sin^2(67 pi / 402) = 1


def test_both_runs_record_every_step(demo) -> None:  # type: ignore[no-untyped-def]
    setup, outcomes = demo
    assert all(config.params["ritz_every"] == 1 for config in setup.configs)
    for run in outcomes:
        ms = [int(r.all_ritz_values.numel()) for r in run.records]
        assert ms == list(range(1, len(ms) + 1))  # one record per Lanczos step: m = 1, 2, 3, ...
