"""Lesson: Power iteration: the gap ratio sets the speed.

The explanation is ``POWER.text``; ``POWER.build(values)`` returns the problem, the runs and the
charts (measured curves against the theory of :mod:`explorer.analysis.theory`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from explorer import problems
from explorer.analysis import theory
from explorer.analysis.compare import CompareSettings, RunConfig, RunOutcome
from explorer.solvers.registry import ParamSpec
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series, iterations, positive, ritz_column, start_vector

__all__ = ["POWER"]


_POWER_TEXT = r"""
Power iteration multiplies a vector by $A$ again and again. Write the start as a sum of
eigenvectors: after $t$ steps the part along $u_i$ has grown by $\lambda_i^t$, so everything
but the dominant direction shrinks like $|\lambda_2/\lambda_1|^t$ relative to it. For a
symmetric matrix the Rayleigh-quotient error is the *square* of that
(Golub & Van Loan, Thm 8.2.1):

$$|\theta_t - \lambda_1| \le \max_i |\lambda_1 - \lambda_i|\,\tan^2\theta_0\,\left|\frac{\lambda_2}{\lambda_1}\right|^{2t}.$$

Move the gap ratio towards 1 and watch the slope flatten. **Momentum** (heavy ball,
$x_{t+1} = A x_t - \beta x_{t-1}$) turns the iterate into a Chebyshev-like polynomial in $A$;
with $\beta = \lambda_2^2/4$ the rate improves from $\lambda_2/\lambda_1$ to
$\lambda_2 / (\lambda_1 + \sqrt{\lambda_1^2 - \lambda_2^2})$ (Xu et al. 2018). Our solver
takes a guess $r$ of $\lambda_2/\lambda_1$ and uses $\beta_t = (r\,\theta_t)^2/4$ with its
running Rayleigh quotient $\theta_t$; the dashed bound follows that same schedule. The matrix is
diagonal, so the angle $\theta_0$ between the random start and the top eigenvector is known
exactly: the dashed lines are bounds, not fits.
"""


def _power_build(values: Mapping[str, Any]) -> LessonSetup:
    n, ratio, seed = int(values["n"]), float(values["gap_ratio"]), int(values["seed"])
    # The solver's momentum r is a guess of lambda_2 / lambda_1; it uses beta_t = (r theta_t)^2 / 4.
    r = min(0.999, float(values["momentum_factor"]) * ratio)
    # lambda_1 = 1, lambda_2 = ratio, the rest spread below 0.8 * ratio.
    spectrum = np.concatenate([[1.0, ratio], np.linspace(0.8 * ratio, 0.0, n - 2)])
    problem = problems.diagonal(spectrum)
    x0 = start_vector(n, seed)
    tan0 = float(theory.start_tangents(x0)[0])
    max_iter = int(values["max_iter"])
    # record_every=1: a point per iteration for the curves against the per-iteration bounds
    configs = (RunConfig("power_iteration", {"momentum": 0.0, "X0": x0, "record_every": 1}, label="plain"),
               RunConfig("power_iteration", {"momentum": r, "X0": x0, "record_every": 1},
                         label=f"momentum r = {r:.3g}"))
    settings = CompareSettings(k=1, which="LM", tol=1e-12, max_iter=max_iter, budget=None, seed=seed)
    spread = float(np.max(np.abs(1.0 - spectrum)))
    beta_limit = (r * 1.0) ** 2 / 4.0  # beta once theta_t has reached lambda_1 = 1

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        series: list[Series] = []
        t_max = 1
        schedule = np.asarray([beta_limit])
        for outcome in outcomes:
            if not outcome.records:
                continue
            its = iterations(outcome.records)
            theta = ritz_column(outcome.records)
            t_max = max(t_max, int(its[-1]))
            series.append(Series(f"{outcome.label}: measured |theta - lambda_1|", its, positive(np.abs(theta - 1.0)),
                                 color=outcome.index))
            if outcome.index == 1:  # the solver's beta schedule, from its own Rayleigh quotients
                schedule = np.concatenate([(r * theta) ** 2 / 4.0, [beta_limit]])
        # Record t holds the Rayleigh quotient of x_(t-1): t - 1 products by A (or p_(t-1)(A)).
        t = np.arange(1, t_max + 1, dtype=float)
        plain = theory.power_rayleigh_bound(spectrum, tan0, t - 1)
        accelerated = spread * tan0 ** 2 * theory.momentum_polynomial_ratio(spectrum, schedule, t_max - 1) ** 2
        floor = 1e-17
        series.append(Series(f"bound (GVL 8.2.1), rate {ratio:.3g}^2t", t, np.maximum(plain, floor), role="theory",
                             color=0))
        series.append(Series(f"bound with this momentum, rate {theory.momentum_rate(1.0, ratio, beta_limit):.3g}^2t",
                             t, np.maximum(accelerated, floor), role="theory", color=1))
        return [Chart("power_error", "Eigenvalue error against iterations", "iteration t", "|theta_t - lambda_1|",
                      tuple(series))]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        for outcome in outcomes:
            if outcome.result is None or len(outcome.records) < 6:
                continue
            err = np.abs(ritz_column(outcome.records) - 1.0)
            its = iterations(outcome.records)
            mask = (err > 1e-13) & np.isfinite(err)
            if mask.sum() >= 4:
                tail = max(4, int(mask.sum()) // 2)
                slope = np.polyfit(its[mask][-tail:], np.log(err[mask][-tail:]), 1)[0]
                out.append(f"{outcome.label}: measured error rate per step {math.exp(slope):.4f} "
                           f"(theory: {ratio ** 2:.4f} plain, {theory.momentum_rate(1.0, ratio, beta_limit) ** 2:.4f} "
                           f"with this momentum); {outcome.result.status.value} after {outcome.result.n_matvec} "
                           "matvecs.")
        return out

    facts = {"lambda_2 / lambda_1": f"{ratio:.4g}", "tan theta_0": f"{tan0:.3g}",
             "momentum r (beta = (r theta)^2/4)": f"{r:.4g}",
             "rate plain / momentum": f"{ratio:.4g} / {theory.momentum_rate(1.0, ratio, beta_limit):.4g}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


POWER = Lesson(
    key="power",
    title="Power iteration: the gap ratio sets the speed",
    text=_POWER_TEXT,
    params=(
        ParamSpec("gap_ratio", "float", 0.9, "lambda_2 / lambda_1 of the test matrix.", minimum=0.3, maximum=0.995),
        ParamSpec("momentum_factor", "float", 1.0, "The solver's momentum r is this factor times the true "
                  "lambda_2 / lambda_1 (1 = the optimal guess, 0 = none; above 1 the bulk starts to oscillate).",
                  minimum=0.0, maximum=1.2),
        ParamSpec("n", "int", 200, "Matrix size (diagonal).", minimum=10, maximum=5000),
        ParamSpec("max_iter", "int", 400, "Iterations per run.", minimum=10, maximum=5000),
        ParamSpec("seed", "int", 0, "Seed of the random start vector.", minimum=0),
    ),
    build=_power_build,
    references=("Golub & Van Loan, Matrix Computations, 4th ed., Thm 8.2.1",
                "Xu, He, De Sa, Mitliagkas, Re, Accelerated stochastic power iteration, AISTATS 2018"),
    solvers=("power_iteration",),
)
