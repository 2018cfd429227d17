"""Lesson: LOBPCG: block size and preconditioning on a Laplacian.

The explanation is ``LOBPCG.text``; ``LOBPCG.build(values)`` returns the problem, the runs and the
charts (measured curves against the theory of :mod:`explorer.analysis.theory`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from explorer import problems
from explorer.analysis import theory
from explorer.analysis.compare import CompareSettings, RunConfig, RunOutcome
from explorer.solvers.registry import ParamSpec
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series, iterations, positive, ritz_column

__all__ = ["LOBPCG"]


_LOBPCG_TEXT = r"""
LOBPCG improves a block of vectors $X$ by Rayleigh-Ritz on $\mathrm{span}\{X, TR, P\}$: the
current vectors, their **preconditioned** residuals and the previous update. Two knobs:

* **block size**: extra "guard" columns beyond $k$ widen the gap that governs the $k$-th pair
  (roughly $\lambda_k$ against $\lambda_{b+1}$ instead of $\lambda_{k+1}$), at one more matvec
  per column and iteration, and let the block see every copy of a repeated eigenvalue;
* **preconditioner** $T \approx A^{-1}$: the per-step guarantee of Knyazev & Neymeyr for the
  smallest eigenvalue, $\Delta' \le \sigma^2 \Delta$ with
  $\Delta = \frac{\lambda - \lambda_1}{\lambda_2 - \lambda}$,
  $\sigma = \gamma + (1-\gamma)\lambda_1/\lambda_2$ and
  $\gamma = \frac{\kappa(TA) - 1}{\kappa(TA) + 1}$, improves as $TA$ gets better conditioned.
  The dashed curves are that guarantee for the actual $\kappa(TA)$ (computed densely for this
  small problem); LOBPCG is usually much faster than it.

The Dirichlet Laplacian has a constant diagonal, so Jacobi ($T = D^{-1}$) changes nothing:
a lesson in itself. A graph Laplacian has varying degrees, and there Jacobi helps (it is
singular, so no guarantee is drawn).
"""


def _lobpcg_problem(name: str, size: int, seed: int) -> Any:
    if name == "laplacian_2d":
        return problems.laplacian_2d(size)
    return problems.random_graph_laplacian(size * size, p=min(1.0, 8.0 / (size * size)), seed=seed)


def _condition_tA(problem: Any, jacobi: bool) -> float | None:
    """kappa(T A) for T = I or T = D^-1 of an SPD matrix (dense, small n only); None if singular or large."""
    n = problem.operator.shape[0]
    if n > 2500:
        return None
    A = problem.operator.to_dense().cpu().double()
    if jacobi:
        d = torch.diagonal(A).abs().clamp_min(np.finfo(float).tiny).rsqrt()
        A = d.unsqueeze(1) * A * d.unsqueeze(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this thread only; small dense work, and the box may be shared (LIVE.md 2.4)
    try:
        values = torch.linalg.eigvalsh(A)
    finally:
        torch.set_num_threads(threads)
    positive = values[values > 1e-10 * float(values.abs().max())]
    if positive.numel() < values.numel() or positive.numel() == 0:
        return None  # singular: the bound needs an SPD matrix
    return float(positive.max() / positive.min())


def _lobpcg_build(values: Mapping[str, Any]) -> LessonSetup:
    name, size, block, seed = str(values["problem"]), int(values["grid"]), int(values["block_size"]), int(values["seed"])
    k = 3
    block = max(block, k)
    problem = _lobpcg_problem(name, size, seed)
    max_iter = int(values["max_iter"])
    configs = (RunConfig("lobpcg", {"block_size": k, "preconditioner": "none"}, label=f"block {k}, no preconditioner"),
               RunConfig("lobpcg", {"block_size": block, "preconditioner": "none"},
                         label=f"block {block}, no preconditioner"),
               RunConfig("lobpcg", {"block_size": block, "preconditioner": "jacobi"}, label=f"block {block}, Jacobi"))
    settings = CompareSettings(k=k, which="SA", tol=1e-8, max_iter=max_iter, budget=None, seed=seed)
    exact = problem.eigenvalues.double().numpy()
    norm_a = float(np.max(np.abs(exact)))
    kappas = {False: _condition_tA(problem, False), True: _condition_tA(problem, True)}
    lam1, lam2 = float(exact[0]), float(exact[1]) if exact.size > 1 else math.inf

    def sigma_for(jacobi: bool) -> float | None:
        kappa = kappas[jacobi]
        if kappa is None or not 0 < lam1 < lam2:
            return None
        return theory.pinvit_sigma(lam1, lam2, theory.optimal_gamma(kappa))

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        by_matvec: list[Series] = []
        by_iteration: list[Series] = []
        guarded: set[bool] = set()  # one guarantee per preconditioner (it does not depend on the block)
        for outcome in outcomes:
            records = outcome.records
            if not records:
                continue
            its = iterations(records)
            mv = np.asarray([r.n_matvec for r in records], dtype=float)
            err = np.abs(ritz_column(records, 0) - lam1) / norm_a
            by_matvec.append(Series(outcome.label, mv, positive(err), color=outcome.index))
            by_iteration.append(Series(outcome.label, its, positive(err), color=outcome.index))
            jacobi = outcome.config.params.get("preconditioner") == "jacobi"
            sigma = sigma_for(jacobi)
            if sigma is not None and jacobi not in guarded:
                guarded.add(jacobi)
                theta = ritz_column(records, 0)
                below = np.flatnonzero(theta < lam2)
                if below.size:
                    t0 = int(below[0])
                    steps = its[t0:] - its[t0]
                    bound = theory.pinvit_bound_curve(float(theta[t0]), lam1, lam2, sigma, steps) / norm_a
                    which_t = "Jacobi" if jacobi else "no preconditioner"
                    by_iteration.append(Series(f"guarantee, {which_t}: \u00d7 sigma^2 = {sigma ** 2:.4f} per step",
                                               its[t0:], np.maximum(bound, 1e-18), role="theory", color=outcome.index))
        return [Chart("lobpcg_iterations", "Smallest eigenvalue: error per iteration (with the guarantee)",
                      "iteration", "|theta_1 - lambda_1| / ||A||", tuple(by_iteration)),
                Chart("lobpcg_matvecs", "The same against matvecs (a bigger block costs more per iteration)",
                      "matvecs", "|theta_1 - lambda_1| / ||A||", tuple(by_matvec))]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        for outcome in outcomes:
            if outcome.result is None:
                continue
            out.append(f"{outcome.label}: {outcome.result.status.value} after {outcome.result.n_iter} iterations, "
                       f"{outcome.result.n_matvec} matvecs, {outcome.result.elapsed_s:.2f} s.")
        same = [o for o in outcomes[1:] if o.result is not None]
        if len(same) == 2 and same[0].result.n_matvec == same[1].result.n_matvec and torch.equal(
                same[0].result.eigenvalues, same[1].result.eigenvalues):
            out.append("Jacobi changed nothing: identical iterations and eigenvalues (a constant diagonal makes "
                       "D^-1 a multiple of the identity, and LOBPCG ignores the scale of T).")
        for jacobi in (False, True):
            kappa = kappas[jacobi]
            if kappa is not None:
                sigma = sigma_for(jacobi)
                extra = "" if sigma is None else (f"; guaranteed contraction sigma^2 = {sigma ** 2:.4f} per step, "
                                                  "far more pessimistic than what LOBPCG does")
                out.append(f"kappa(TA) with {'Jacobi' if jacobi else 'no preconditioner'}: {kappa:.4g}{extra}.")
        if kappas[False] is None:
            out.append("This matrix is singular (a graph Laplacian has the eigenvalue 0), so the SPD guarantee is "
                       "not drawn.")
        return out

    facts = {"n": f"{problem.n:,}", "lambda_1, lambda_2": f"{lam1:.5g}, {lam2:.5g}",
             "kappa(A)": "n/a" if kappas[False] is None else f"{kappas[False]:.4g}",
             "kappa(D^-1 A)": "n/a" if kappas[True] is None else f"{kappas[True]:.4g}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


LOBPCG = Lesson(
    key="lobpcg",
    title="LOBPCG: block size and preconditioning on a Laplacian",
    text=_LOBPCG_TEXT,
    params=(
        ParamSpec("problem", "choice", "laplacian_2d", "laplacian_2d: constant diagonal (Jacobi is a no-op); "
                  "random_graph_laplacian: varying degrees (Jacobi helps).",
                  choices=("laplacian_2d", "random_graph_laplacian")),
        ParamSpec("grid", "int", 20, "Grid side N (n = N^2; the graph has N^2 vertices too).", minimum=5, maximum=60),
        ParamSpec("block_size", "int", 6, "Block size of the 2nd and 3rd run (the 1st uses block = k = 3).",
                  minimum=3, maximum=16),
        ParamSpec("max_iter", "int", 300, "Iteration limit per run.", minimum=10, maximum=2000),
        ParamSpec("seed", "int", 0, "Seed of the random start block (and of the graph).", minimum=0),
    ),
    build=_lobpcg_build,
    references=("A. V. Knyazev, SIAM J. Sci. Comput. 23(2) (2001) 517-541",
                "A. V. Knyazev, K. Neymeyr, Linear Algebra Appl. 358 (2003) 95-114, Thm 1.1"),
    solvers=("lobpcg",),
)
