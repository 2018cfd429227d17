"""Lesson: Chebyshev filtering: a polynomial that damps the unwanted spectrum (Zhou & Saad).

The explanation is ``CHEBYSHEV.text``; ``CHEBYSHEV.build(values)`` returns the problem (a 1-D
Laplacian, whose spectrum is known in closed form), the runs and the charts: the filter
polynomial of the run drawn over the exact spectrum, and the measured eigenvalue errors against
the rate that polynomial predicts.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from explorer import problems
from explorer.analysis.compare import CompareSettings, RunConfig, RunOutcome
from explorer.solvers.bandpass import (MAX_DEGREE, bandpass_coefficients, bandpass_values, interval_degree,
                                      jackson_coefficients)
from explorer.solvers.chebyshev import default_block_size, filter_values
from explorer.solvers.registry import ParamSpec
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series, iterations, positive, ritz_column

__all__ = ["CHEBYSHEV", "predicted_errors", "subspace_rates"]


_CHEBYSHEV_TEXT = r"""
Subspace iteration applies a matrix function to a block of vectors and re-orthonormalizes: a
direction with eigenvalue $\lambda_i$ is multiplied by $p(\lambda_i)$, so it wins against the
unwanted directions $j > b$ ($b$ = block size) by the factor $\rho_i = \max_{j>b}|p(\lambda_j)|/|p(\lambda_i)|$
per iteration, and the eigenvalue error, a square of the angle, by $\rho_i^2$. With $p(t) = t$
that is the power method, hopeless for the *smallest* eigenvalues of a Laplacian. The
**Chebyshev filter** of degree $m$ on the unwanted interval $[a, b_{up}]$,

$$p_m(t) = \frac{T_m\big((t-c)/e\big)}{T_m\big((a_0-c)/e\big)},\qquad c = \tfrac{a+b_{up}}{2},\ e = \tfrac{b_{up}-a}{2},$$

is the polynomial of degree $m$ that stays smallest on $[a, b_{up}]$ while growing fastest
outside it: it is bounded by $1/|T_m((a_0-c)/e)|$ there and grows like $e^{m\,\mathrm{acosh}|x|}$
below $a$. It needs only products with $A$ (three-term recurrence, no inner product): the
method of choice on GPUs and in electronic-structure codes (Zhou, Saad, Tiago & Chelikowsky 2006).

The solver estimates $b_{up}$ with a few Lanczos steps ($\theta_{max} + \|f\|$), then moves the
**cut** $a$ down to the block's largest Ritz value after each Rayleigh-Ritz step. The first chart
draws $|p_m|$ of the first and the last iteration over the exact spectrum (dots: the
eigenvalues; in color: the wanted ones); the second compares the measured errors with the rate
$\prod \rho_k^2$ those polynomials predict, and the third puts two degrees and Lanczos side by
side per matvec. A higher degree costs more matvecs per iteration but usually fewer in all, up to
a few tens: $T_m$ grows like $e^{m\,\mathrm{acosh}|x|}$ only once $m\,\mathrm{acosh}|x|$ is large,
and every Rayleigh-Ritz step costs one more matvec per vector. Lanczos, which builds the best
polynomial of its Krylov space adaptively instead of a fixed one per iteration, needs far fewer
matvecs; the filter's advantages are elsewhere: no inner products inside it, large blocks of
products (fast on GPUs), and no factorization.

**An interior interval** $[\alpha, \beta)$ needs a *band-pass* polynomial instead: with the spectrum
mapped to $[-1, 1]$, the Chebyshev series of the interval's indicator,
$\gamma_0 = (\arccos\hat\alpha - \arccos\hat\beta)/\pi$,
$\gamma_j = 2(\sin j\arccos\hat\alpha - \sin j\arccos\hat\beta)/(j\pi)$, truncated at degree $m$
overshoots near the ends (Gibbs); the **Jackson** damping factors $g_j$ turn the truncation into a
convolution with a positive kernel, so $p(t) = \sum_j g_j\gamma_j T_j(t)$ stays in $[0, 1]$: about 1
inside, $1/2$ at the ends, small outside (Di Napoli, Polizzi & Saad 2016). The last chart draws both
for the interval of the parameters; ``chebyshev(A, k, lower=..., upper=...)`` filters a block with it
(degree raised until the kernel is a quarter of the interval), keeps the Ritz pairs inside, and
counts the interval's eigenvalues by inertia, or estimates the count as the trace of $p(A)$.
"""


def subspace_rates(spectrum: np.ndarray, records: Sequence[Any], wanted: int, block: int) -> np.ndarray:
    """rho_i per iteration: max_{j > block} |p(lambda_j)| / |p(lambda_i)| for i < wanted, from each record's
    filter (``extras``: degree, filter_low, filter_high, scale_point; SA, ascending ``spectrum``). Shape
    (len(records), wanted); 1 where a record has no filter."""
    out = np.ones((len(records), wanted))
    for t, record in enumerate(records):
        extras = record.extras
        degree = int(extras.get("degree", 0))
        if degree < 1 or "filter_low" not in extras:
            continue
        p = np.abs(filter_values(spectrum, degree, float(extras["filter_low"]), float(extras["filter_high"]),
                                 float(extras["scale_point"])))
        unwanted = float(p[block:].max()) if spectrum.size > block else 0.0
        out[t] = unwanted / np.maximum(p[:wanted], np.finfo(float).tiny)
    return out


def predicted_errors(first_error: float, rates: np.ndarray) -> np.ndarray:
    """The eigenvalue error after each iteration: ``first_error`` at the first, then times rho^2 per iteration."""
    factors = np.concatenate([[1.0], np.cumprod(np.asarray(rates, dtype=float)[1:] ** 2)])
    return first_error * factors


def _bandpass_chart(exact: np.ndarray, low: float, high: float) -> Chart:
    """The band-pass filter of [low, high) over the exact spectrum: Jackson-damped and plain truncation."""
    low, high = sorted((low, high))
    center, half = 0.5 * (exact[-1] + exact[0]), 0.5 * (exact[-1] - exact[0])
    ta, tb = (low - center) / half, (high - center) / half
    degree = min(interval_degree(ta, tb, 20), MAX_DEGREE)
    damped = bandpass_coefficients(degree, ta, tb)
    plain = damped / jackson_coefficients(degree)  # the undamped series gamma_j
    grid = np.linspace(float(exact[0]), float(exact[-1]), 1200)
    on_spectrum = bandpass_values(exact, damped, center, half)
    inside = (exact >= low) & (exact < high)
    series = (Series(f"Jackson-damped, degree {degree}", grid, bandpass_values(grid, damped, center, half), color=0),
              Series("plain truncation (Gibbs)", grid, bandpass_values(grid, plain, center, half), role="theory",
                     color=1),
              Series("eigenvalues outside", exact[~inside], on_spectrum[~inside], role="reference", mode="markers"),
              Series(f"the {int(inside.sum())} eigenvalues in [{low:g}, {high:g})", exact[inside], on_spectrum[inside],
                     mode="markers", color=3))
    return Chart("chebyshev_bandpass", f"A band-pass filter for [{low:g}, {high:g})", "eigenvalue t", "p(t)", series)


def _build(values: Mapping[str, Any]) -> LessonSetup:
    n, k, degree, low_degree = int(values["n"]), int(values["k"]), int(values["degree"]), int(values["low_degree"])
    seed = int(values["seed"])
    problem = problems.laplacian_1d(n)
    exact = problem.eigenvalues.double().numpy()
    block = default_block_size(k, n)
    # max_iter counts filter iterations; Lanczos counts steps (one matvec each): give it as many matvecs
    configs = (RunConfig("chebyshev", {"degree": low_degree}, label=f"Chebyshev, degree {low_degree}"),
               RunConfig("chebyshev", {"degree": degree}, label=f"Chebyshev, degree {degree}"),
               RunConfig("lanczos", {"max_iter": int(values["max_iter"]) * (degree + 1) * block, "ritz_every": 1},
                         label="Lanczos (Krylov)"))
    settings = CompareSettings(k=k, which="SA", tol=1e-8, max_iter=int(values["max_iter"]), budget=None, seed=seed)
    norm = float(exact.max())

    def main_run(outcomes: Sequence[RunOutcome]) -> RunOutcome | None:
        return next((o for o in outcomes if o.index == 1 and o.records), None)

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        out: list[Chart] = []
        run = main_run(outcomes)
        grid = np.geomspace(exact[0] / 2, exact[-1], 600)
        filter_series: list[Series] = []
        if run is not None:
            picks = [(0, "first")] + ([(len(run.records) - 1, "last")] if len(run.records) > 1 else [])
            for t, name in picks:
                extras = run.records[t].extras
                args = (int(extras["degree"]), float(extras["filter_low"]), float(extras["filter_high"]),
                        float(extras["scale_point"]))
                filter_series.append(Series(f"|p_m(t)|, iteration {t + 1} (degree {args[0]}, cut {args[1]:.3g})",
                                            grid, positive(np.abs(filter_values(grid, *args)), 1e-300),
                                            color=0 if name == "first" else 1))
                if name == "last" or len(picks) == 1:
                    on_spectrum = positive(np.abs(filter_values(exact, *args)), 1e-300)
                    filter_series.append(Series("eigenvalues (unwanted)", exact[k:], on_spectrum[k:], role="reference",
                                                mode="markers"))
                    filter_series.append(Series(f"the {k} wanted eigenvalues", exact[:k], on_spectrum[:k],
                                                mode="markers", color=3))
                    span = np.asarray([float(on_spectrum.min()), float(on_spectrum.max())])
                    filter_series.append(Series("cut a (start of the damped interval)", np.full(2, args[1]), span,
                                                role="theory", color=2))
        out.append(Chart("chebyshev_filter", "The filter polynomial over the spectrum (log-log)", "eigenvalue t",
                         "|p_m(t)|", tuple(filter_series), log_y=True, log_x=True))
        errors: list[Series] = []
        if run is not None:
            its = iterations(run.records)
            for i in range(k):
                err = np.abs(ritz_column(run.records, i) - exact[i]) / norm
                errors.append(Series(f"|theta_{i + 1} - lambda_{i + 1}| / ||A||" if i in (0, k - 1) else "",
                                     its, positive(err), color=i))
            rates = subspace_rates(exact, run.records, k, block)
            first = float(np.abs(ritz_column(run.records[:1], k - 1)[0] - exact[k - 1]) / norm)
            errors.append(Series(f"predicted for lambda_{k}: first error x prod rho_{k}^2", its,
                                 positive(predicted_errors(first, rates[:, k - 1])), role="theory", color=k - 1))
        out.append(Chart("chebyshev_rate", f"Errors of the {k} lowest eigenvalues and the filter's rate "
                         f"(degree {degree})", "iteration", "relative error", tuple(errors)))
        per_matvec: list[Series] = []
        for outcome in outcomes:
            if not outcome.records:
                continue
            mv = np.asarray([r.n_matvec for r in outcome.records], dtype=float)
            err = np.abs(ritz_column(outcome.records, k - 1) - exact[k - 1]) / norm
            per_matvec.append(Series(outcome.label, mv, positive(err), color=outcome.index))
        out.append(Chart("chebyshev_matvecs", f"The k-th eigenvalue's error per matvec", "matvecs",
                         f"|theta_{k} - lambda_{k}| / ||A||", tuple(per_matvec)))
        out.append(_bandpass_chart(exact, float(values["interval_low"]), float(values["interval_high"])))
        return out

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        for outcome in outcomes:
            if outcome.result is None:
                continue
            result = outcome.result
            out.append(f"{outcome.label}: {result.status.value} after {result.n_iter} iterations, "
                       f"{result.n_matvec} matvecs; max error {float(np.max(np.abs(result.eigenvalues.numpy() - exact[:k]))):.1e}.")
        run = main_run(outcomes)
        if run is not None and len(run.records) > 1:
            rates = subspace_rates(exact, run.records, k, block)[1:, k - 1]
            measured = np.abs(ritz_column(run.records, k - 1) - exact[k - 1])
            ok = np.flatnonzero(measured > 1e3 * np.finfo(float).eps * norm)
            if ok.size >= 2:
                observed = (measured[ok[-1]] / measured[ok[0]]) ** (1.0 / max(ok[-1] - ok[0], 1))
                out.append(f"Degree {degree}: the filters promised an error factor rho_{k}^2 of "
                           f"{float(np.exp(np.mean(np.log(rates ** 2)))):.2e} per iteration for lambda_{k} "
                           f"(geometric mean); measured {observed:.2e} until the rounding level.")
            first = run.records[0].extras
            out.append(f"The first filter damped [{first['filter_low']:.3g}, {first['filter_high']:.3g}] "
                       f"(the Lanczos bound of lambda_max = {norm:.6g} is {first['filter_high']:.6g}); the last "
                       f"one started at {run.records[-1].extras['filter_low']:.3g}.")
        return out

    facts = {"n": f"{n:,}", "block size b": str(block),
             f"lambda_1 .. lambda_{k}": ", ".join(f"{v:.4g}" for v in exact[:k]),
             f"lambda_(b+1), lambda_max": f"{exact[block]:.4g}, {exact[-1]:.6g}" if n > block else "-"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


CHEBYSHEV = Lesson(
    key="chebyshev",
    title="Chebyshev filtering: a polynomial that damps the unwanted spectrum",
    text=_CHEBYSHEV_TEXT,
    params=(
        ParamSpec("n", "int", 400, "Size of the 1-D Laplacian (eigenvalues 4 sin^2(i pi / (2 (n + 1))).",
                  minimum=50, maximum=5000),
        ParamSpec("k", "int", 4, "Lowest eigenvalues wanted.", minimum=1, maximum=12),
        ParamSpec("degree", "int", 20, "Filter degree of the main run (the rate chart).", minimum=2, maximum=80),
        ParamSpec("low_degree", "int", 6, "Filter degree of the comparison run.", minimum=1, maximum=80),
        ParamSpec("max_iter", "int", 200, "Iteration limit of every run.", minimum=5, maximum=2000),
        ParamSpec("seed", "int", 0, "Seed of the random start.", minimum=0),
        ParamSpec("interval_low", "float", 1.0, "Lower end of the interior interval of the band-pass chart.",
                  minimum=0.0, maximum=4.0),
        ParamSpec("interval_high", "float", 1.5, "Upper end of the interior interval of the band-pass chart.",
                  minimum=0.0, maximum=4.0),
    ),
    build=_build,
    references=("Y. Zhou, Y. Saad, M. L. Tiago, J. R. Chelikowsky, J. Comput. Phys. 219 (2006) 172-184",
                "Y. Zhou, Y. Saad, SIAM J. Matrix Anal. Appl. 29(3) (2007) 954-971",
                "Y. Saad, Numerical Methods for Large Eigenvalue Problems, 2nd ed. (2011), 7.4",
                "E. Di Napoli, E. Polizzi, Y. Saad, Numer. Linear Algebra Appl. 23 (2016) 674-692"),
    solvers=("chebyshev", "lanczos"),
)
