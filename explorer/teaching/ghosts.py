"""Lesson: Loss of orthogonality and ghost eigenvalues (Paige 1976).

The explanation is ``GHOSTS.text``; ``GHOSTS.build(values)`` returns the problem, the runs and the
charts (measured curves against the theory of :mod:`explorer.analysis.theory`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from explorer import problems
from explorer.analysis import theory
from explorer.analysis.compare import CompareSettings, RunConfig, RunOutcome
from explorer.solvers.registry import ParamSpec
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series, iterations, positive, start_vector, staircase_points

__all__ = ["GHOSTS"]


def _strakos(n: int, rho: float, low: float = 0.1, high: float = 100.0) -> np.ndarray:
    """Strakos' spectrum ``lambda_i = l1 + (i-1)/(n-1) (ln - l1) rho^(n-i)``: dense at the bottom, sparse on top.

    The classic test for loss of orthogonality in Lanczos (Strakos 1991; Greenbaum &
    Strakos, SIAM J. Matrix Anal. Appl. 13 (1992) 121-137).
    """
    i = np.arange(1, n + 1, dtype=float)
    return low + (i - 1) / (n - 1) * (high - low) * rho ** (n - i)



_GHOST_TEXT = r"""
In exact arithmetic the Lanczos vectors are orthonormal by construction. In floating point
they are not, and **Paige (1976)** explained exactly how: the new vector $q_{m+1}$ leans
towards a Ritz vector $y_i$ by about $\varepsilon\|A\| / |\beta_m s_{mi}|$, and
$|\beta_m s_{mi}|$ is that Ritz pair's residual. So orthogonality is lost *precisely when a
Ritz value converges*, and the lost direction is that converged eigenvector. The method then
finds it again: a **ghost**, a second copy of an eigenvalue of multiplicity one.

The matrix is Strakos' classic test: eigenvalues crowded at the bottom and spread out at the
top, so the top ones converge fast. The dashed line is Paige's prediction
$\varepsilon\|A\| / \min_i(\text{residual estimate})$. In the staircases (left: no
re-orthogonalization, right: full) red crosses are ghost copies.
"""


def _ghost_build(values: Mapping[str, Any]) -> LessonSetup:
    n, rho, steps, seed = int(values["n"]), float(values["rho"]), int(values["steps"]), int(values["seed"])
    k = 4
    spectrum = _strakos(n, rho)
    problem = problems.diagonal(spectrum)
    x0 = start_vector(n, seed)
    basis = max(steps + 5, 20)
    every = {"ritz_every": 1}  # the loss and the ghosts step by step
    configs = (RunConfig("lanczos", {"reorthogonalization": "none", "max_basis": basis, "block_size": 1, "X0": x0,
                                     **every},
                         label="no re-orthogonalization"),
               RunConfig("lanczos", {"reorthogonalization": "full", "max_basis": basis, "block_size": 1, "X0": x0,
                                     **every},
                         label="full re-orthogonalization"))
    # tol below what float64 can certify on purpose: the runs go on for `steps` iterations.
    settings = CompareSettings(k=k, which="LA", tol=1e-18, max_iter=steps, budget=None, seed=seed)
    norm_a = float(np.max(np.abs(spectrum)))
    eps = float(np.finfo(np.float64).eps)
    exact = np.sort(spectrum)
    ghost_tol = 1e-8 * norm_a

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        loss: list[Series] = []
        copies: list[Series] = []
        stairs: list[Chart] = []
        for outcome in outcomes:
            records = outcome.records
            if not records:
                continue
            its = iterations(records)
            ortho = np.asarray([np.nan if r.orthogonality_loss is None else r.orthogonality_loss for r in records])
            loss.append(Series(f"{outcome.label}: max|Q^T Q - I|", its, positive(ortho), color=outcome.index))
            if outcome.index == 0:
                paige = np.asarray([theory.paige_orthogonality_level(r.residual_norms, norm_a, eps) for r in records])
                loss.append(Series("Paige: eps ||A|| / min residual estimate", its, paige, role="theory",
                                   color=outcome.index))
            n_copies = []
            for record in records:
                allr = record.all_ritz_values if record.all_ritz_values is not None else record.ritz_values
                n_copies.append(int(np.sum(np.abs(allr.double().numpy() - exact[-1]) <= ghost_tol)))
            copies.append(Series(f"{outcome.label}: Ritz values at lambda_1", its, np.asarray(n_copies, float),
                                 mode="lines", color=outcome.index))
            window = (float(exact[-8]) - 0.05 * norm_a, float(exact[-1]) + 0.05 * norm_a) if n >= 8 else None
            x, y, ghost = staircase_points(records, exact=exact, window=window, ghost_tol=ghost_tol)
            top_lines = [Series("exact eigenvalues" if j == 0 else "", np.asarray([0.0, float(its[-1])]),
                                np.asarray([v, v]), role="reference") for j, v in enumerate(exact[-6:][::-1])]
            stairs.append(Chart(f"ghost_staircase_{outcome.index}", f"Top Ritz values: {outcome.label}",
                                "Lanczos step", "Ritz value",
                                (Series("Ritz values (red: ghost copy)", x, y, mode="markers", color=outcome.index,
                                        highlight=ghost), *top_lines), log_y=False))
        return [Chart("ghost_loss", "Orthogonality of the Lanczos basis", "Lanczos step", "max|Q^T Q - I|",
                      tuple(loss)),
                Chart("ghost_copies", "Copies of the largest eigenvalue among the Ritz values", "Lanczos step",
                      "number of copies", tuple(copies), log_y=False),
                *stairs]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        for outcome in outcomes:
            if not outcome.records:
                continue
            last = outcome.records[-1]
            allr = last.all_ritz_values if last.all_ritz_values is not None else last.ritz_values
            copies = int(np.sum(np.abs(allr.double().numpy() - exact[-1]) <= ghost_tol))
            losses = [r.orthogonality_loss for r in outcome.records if r.orthogonality_loss is not None]
            flagged = sum(1 for r in outcome.records if r.ghost_mask is not None and bool(r.ghost_mask.any()))
            out.append(f"{outcome.label}: final orthogonality loss {losses[-1]:.1e}, {copies} Ritz value(s) at "
                       f"lambda_1 = {exact[-1]:.6g} after {len(outcome.records)} steps; the solver flagged ghosts in "
                       f"{flagged} step(s)." if losses else f"{outcome.label}: no orthogonality data.")
        return out

    facts = {"n": str(n), "rho": f"{rho:g}", "lambda_1 / lambda_2": f"{exact[-1]:.4g} / {exact[-2]:.4g}",
             "eps ||A||": f"{eps * norm_a:.2e}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


GHOSTS = Lesson(
    key="ghosts",
    title="Loss of orthogonality and ghost eigenvalues (Paige 1976)",
    text=_GHOST_TEXT,
    params=(
        ParamSpec("rho", "float", 0.9, "Strakos parameter: smaller = top eigenvalues more isolated.",
                  minimum=0.5, maximum=0.99),
        ParamSpec("n", "int", 100, "Matrix size.", minimum=20, maximum=2000),
        ParamSpec("steps", "int", 90, "Lanczos steps (plain Lanczos may even run past n: its vectors are no "
                  "longer independent).", minimum=10, maximum=400),
        ParamSpec("seed", "int", 0, "Seed of the random start vector.", minimum=0),
    ),
    build=_ghost_build,
    references=("C. C. Paige, J. Inst. Math. Appl. 18 (1976) 373-381; Linear Algebra Appl. 34 (1980) 235-258",
                "B. N. Parlett, The Symmetric Eigenvalue Problem, ch. 13",
                "Z. Strakos, Linear Algebra Appl. 154-156 (1991) 535-549; Greenbaum & Strakos, SIMAX 13 (1992)"),
    solvers=("lanczos",),
)
