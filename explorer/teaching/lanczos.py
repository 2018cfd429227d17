"""Lesson: Lanczos: Chebyshev speed, and the extreme eigenvalues first.

The explanation is ``LANCZOS.text``; ``LANCZOS.build(values)`` returns the problem, the runs and the
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
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series, iterations, positive, ritz_column, start_vector, staircase_points

__all__ = ["LANCZOS"]


_LANCZOS_TEXT = r"""
Lanczos builds the Krylov space $\mathcal{K}_m = \mathrm{span}\{v, Av, \dots, A^{m-1}v\}$ and
takes the eigenvalues of the projected tridiagonal matrix $T_m$ (the Ritz values). Among all
polynomials of degree $m-1$ it implicitly picks the best one, so it is never slower than
$m-1$ power steps and usually far faster. The **Kaniel-Paige-Saad bound** (Saad, Thm 6.4)
makes that precise with a Chebyshev polynomial $T_j$:

$$0 \le \lambda_i - \theta_i^{(m)} \le (\lambda_1 - \lambda_n)\left(\frac{\kappa_i \tan\theta(v, u_i)}{T_{m-i}(\gamma_i)}\right)^2, \qquad \gamma_i = 1 + 2\,\frac{\lambda_i - \lambda_{i+1}}{\lambda_{i+1} - \lambda_n}.$$

Here $\kappa_1 = 1$ and $\kappa_i = \prod_{j<i} \frac{\theta_j - \lambda_n}{\theta_j - \lambda_i}$ (from the Ritz values); the
bounds for $i = 2, 3$ are drawn once they say something (below $\lambda_1 - \lambda_n$).

$T_j(\gamma)$ grows like $(\gamma + \sqrt{\gamma^2-1})^j$, so a relative gap $g$ gives a rate
of about $1 - 2\sqrt{g}$ per step where power iteration has $1 - g$. The **staircase** shows
every Ritz value at every step: the extreme ones settle first, one after the other, while the
interior ones keep moving. One start vector and full re-orthogonalization keep this run close
to exact arithmetic, where the theorem holds.
"""


def _lanczos_build(values: Mapping[str, Any]) -> LessonSetup:
    n, gap, seed, steps = int(values["n"]), float(values["gap"]), int(values["seed"]), int(values["steps"])
    k = 3
    bulk = np.linspace(1.0, 0.0, n - 1)
    spectrum = np.concatenate([[1.0 + gap], bulk])  # lambda_1 = 1 + gap, then [0, 1] evenly
    problem = problems.diagonal(spectrum)
    x0 = start_vector(n, seed)
    tangents = theory.start_tangents(x0)  # eigenvector of spectrum[j] is e_j
    descending_index = np.argsort(-spectrum, kind="stable")
    tan_i = [float(tangents[descending_index[i]]) for i in range(k)]
    # One start vector (block_size 1) and a basis that never restarts: the setting of the theorem.
    # ritz_every=1: a Ritz value per step for the curves against the per-step bound
    configs = (RunConfig("lanczos", {"reorthogonalization": "full", "max_basis": max(steps + 5, 20),
                                     "block_size": 1, "X0": x0, "ritz_every": 1},
                         label="Lanczos (full re-orthogonalization)"),)
    settings = CompareSettings(k=k, which="LA", tol=1e-13, max_iter=steps, budget=None, seed=seed)
    exact = np.sort(spectrum)[::-1]

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        outcome = outcomes[0]
        records = outcome.records
        series: list[Series] = []
        stairs: list[Series] = []
        if records:
            its = iterations(records)
            ms = np.asarray([int((r.all_ritz_values if r.all_ritz_values is not None else r.ritz_values).numel())
                             for r in records])
            ritz_all = [r.all_ritz_values if r.all_ritz_values is not None else r.ritz_values for r in records]
            for i in range(k):
                err = exact[i] - ritz_column(records, i)
                series.append(Series(f"measured lambda_{i + 1} - theta_{i + 1}", its, positive(np.abs(err)), color=i))
                bound = theory.lanczos_bound_curve(spectrum, tan_i[i], ms, i=i + 1, which="LA",
                                                   ritz_values=ritz_all if i > 0 else None)
                # Above lambda_1 - lambda_n the bound says nothing: leave those steps out.
                informative = np.where(bound < exact[0] - exact[-1], bound, np.nan)
                series.append(Series(f"KPS bound i = {i + 1}", its, informative, role="theory", color=i))
            x, y, _ = staircase_points(records, max_points=8000)
            stairs.append(Series("Ritz values", x, y, mode="markers", color=0))
            top = exact[: min(6, exact.size)]
            x_end = float(its[-1])
            for j, value in enumerate(top):
                stairs.append(Series("exact eigenvalues" if j == 0 else "", np.asarray([0.0, x_end]),
                                     np.asarray([value, value]), role="reference"))
        return [
            Chart("lanczos_error", "Ritz-value error against the Kaniel-Paige-Saad bound", "Lanczos step m",
                  "lambda_i - theta_i", tuple(series)),
            Chart("lanczos_staircase", "Ritz values at every step (the staircase)", "Lanczos step m", "Ritz value",
                  tuple(stairs), log_y=False),
        ]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        outcome = outcomes[0]
        if outcome.result is None:
            return []
        records = outcome.records
        violations = 0
        for record in records:
            m = int((record.all_ritz_values if record.all_ritz_values is not None else record.ritz_values).numel())
            bound = theory.lanczos_bound_curve(spectrum, tan_i[0], [m])[0]
            err = exact[0] - float(record.ritz_values[0])
            if err > bound + 1e3 * np.finfo(float).eps * exact[0]:
                violations += 1
        gamma = theory.kps_gamma(exact, 1)
        rate = 1.0 / (gamma + math.sqrt(gamma * gamma - 1.0))
        return [f"gamma_1 = {gamma:.4f}: the bound shrinks by {rate ** 2:.4f} per step; power iteration on the "
                f"same matrix would shrink by {(exact[1] / exact[0]) ** 2:.4f}.",
                f"{len(records)} steps, {outcome.result.n_matvec} matvecs; the measured error of theta_1 exceeded "
                f"the bound at {violations} step(s) (rounding level excepted)."]

    gamma1 = theory.kps_gamma(exact, 1)
    facts = {"relative gap (lambda_1 - lambda_2)/(lambda_2 - lambda_n)": f"{gap:.3g}", "gamma_1": f"{gamma1:.4f}",
             "tan theta(v, u_1)": f"{tan_i[0]:.3g}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


LANCZOS = Lesson(
    key="lanczos",
    title="Lanczos: Chebyshev speed, and the extreme eigenvalues first",
    text=_LANCZOS_TEXT,
    params=(
        ParamSpec("gap", "float", 0.05, "lambda_1 - lambda_2 (the rest of the spectrum fills [0, 1]).",
                  minimum=1e-4, maximum=1.0, log_scale=True),
        ParamSpec("n", "int", 400, "Matrix size (diagonal).", minimum=20, maximum=5000),
        ParamSpec("steps", "int", 80, "Lanczos steps (Krylov dimension m).", minimum=5, maximum=400),
        ParamSpec("seed", "int", 0, "Seed of the random start vector.", minimum=0),
    ),
    build=_lanczos_build,
    references=("Saad, Numerical Methods for Large Eigenvalue Problems, 2nd ed., SIAM 2011, Thm 6.4",
                "Golub & Van Loan, Matrix Computations, 4th ed., 10.1.5 (Kaniel-Paige theory)"),
    solvers=("lanczos",),
)
