"""Lesson: Randomized SVD: oversampling and power iterations (Halko-Martinsson-Tropp).

The explanation is ``RSVD.text``; ``RSVD.build(values)`` returns the problem, the runs and the
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
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series, positive

__all__ = ["RSVD"]


_RSVD_TEXT = r"""
The randomized SVD (Halko, Martinsson & Tropp 2011) multiplies $A$ by a Gaussian block of
$k + p$ columns ($p$ = **oversampling**), orthonormalizes the result into $Q$, and finishes
with a small SVD of $Q^T A$. **Power iterations** replace $A$ by $(AA^T)^q A$, which sharpens
the decay of the singular values from $\sigma_j$ to $\sigma_j^{2q+1}$. The expected error has
a clean bound (HMT Thm 10.6 and Cor. 10.10):

$$\mathbb{E}\,\|A - QQ^TA\| \le \left[\Big(1 + \sqrt{\tfrac{k}{p-1}}\Big)\sigma_{k+1}^{2q+1} + \frac{e\sqrt{k+p}}{p}\Big(\sum_{j>k}\sigma_j^{2(2q+1)}\Big)^{1/2}\right]^{1/(2q+1)},$$

never better than the optimal $\sigma_{k+1}$; truncating to rank $k$ adds at most
$\sigma_{k+1}$ (Thm 9.3). The demo runs every $q$ from 0 up for a few random test matrices
(one per seed) and draws the true error of each rank-$k$ result; the dashed line bounds their
mean. The faint dotted line is the solver's own a-posteriori estimate
$10\sqrt{2/\pi}\,\max_i \|(I - QQ^T)Aw_i\|$ (HMT eq. 4.3): it needs no exact answer and holds
with probability $1 - 10^{-10}$, at the price of being an order of magnitude pessimistic.
With $p < 2$ the theorem says nothing.
"""


def _rsvd_build(values: Mapping[str, Any]) -> LessonSetup:
    n, k, p, q = int(values["n"]), int(values["k"]), int(values["oversampling"]), int(values["power_iterations"])
    decay, seeds = float(values["decay"]), int(values["seeds"])
    from explorer.solvers.randomized import randomized_svd  # the SVD itself (the menu lists the eigen version)

    problem = problems.prescribed_spectrum(n, "geometric", decay=decay, seed=0)
    sigma = np.sort(problem.eigenvalues.double().numpy())[::-1]  # symmetric PSD: singular values = eigenvalues
    # One run per (seed, j): exactly j power iterations (tol=None). A seed fixes the Gaussian test
    # matrix, which the solver draws first, so the runs of one seed differ only in j.
    configs = tuple(RunConfig("randomized_svd", {"n_oversamples": p, "n_power_iter": j, "seed": s, "tol": None},
                              label=f"seed {s}, q = {j}", fn=randomized_svd)
                    for s in range(seeds) for j in range(q + 1))
    settings = CompareSettings(k=k, which="LM", tol=1e-6, max_iter=None, budget=None, seed=0)
    dense = problem.operator.to_dense().double()
    optimal = float(sigma[k]) if k < sigma.size else 0.0

    def true_error(result: Any) -> float:
        U, S, Vh = (getattr(result, name, None) for name in ("U", "S", "Vh"))
        if U is None or S is None or Vh is None:
            return math.nan
        approx = (U.double() * S.double().unsqueeze(0)) @ Vh.double()
        return float(torch.linalg.matrix_norm(dense - approx, ord=2))

    def measured(outcomes: Sequence[RunOutcome]) -> dict[int, list[tuple[int, float]]]:
        by_seed: dict[int, list[tuple[int, float]]] = {}
        for outcome in outcomes:
            if outcome.result is not None:
                params = outcome.config.params
                by_seed.setdefault(int(params["seed"]), []).append((int(params["n_power_iter"]),
                                                                    true_error(outcome.result)))
        return by_seed

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        series: list[Series] = []
        for seed, points in sorted(measured(outcomes).items()):
            points.sort()
            series.append(Series(f"seed {seed}: true ||A - U S V^T||", np.asarray([j for j, _ in points], float),
                                 np.asarray([e for _, e in points]), mode="lines+markers", color=seed))
        longest = next((o for o in reversed(outcomes) if o.records and o.config.params["seed"] == 0
                        and o.config.params["n_power_iter"] == q), None)
        if longest is not None:
            xs = np.asarray([r.iteration - 1 for r in longest.records], dtype=float)
            ys = np.asarray([float(r.extras.get("error_estimate", math.nan)) for r in longest.records])
            series.append(Series("seed 0: the solver's a-posteriori estimate (HMT eq. 4.3)", xs, positive(ys),
                                 role="reference"))
        qs = np.arange(0, q + 1)
        truncated = np.asarray([theory.hmt_truncated_spectral(sigma, k, p, int(j)) for j in qs])
        if np.isfinite(truncated).all():
            series.append(Series("HMT bound on the mean: sigma_(k+1) + E||A - QQ^T A||", qs.astype(float), truncated,
                                 role="theory", color=3))
        series.append(Series("optimal sigma_(k+1)", np.asarray([0.0, float(max(q, 1))]), np.asarray([optimal, optimal]),
                             role="reference"))
        return [Chart("rsvd_error", "Spectral error of the rank-k result against power iterations",
                      "power iterations q", "||A - U S V^T||", tuple(series))]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        by_q: dict[int, list[float]] = {}
        for points in measured(outcomes).values():
            for j, err in points:
                by_q.setdefault(j, []).append(err)
        out = []
        for j in sorted(by_q):
            bound = theory.hmt_truncated_spectral(sigma, k, p, j)
            bound_text = f"{bound:.3e}" if math.isfinite(bound) else "none (p < 2)"
            out.append(f"q = {j}: mean true error over {len(by_q[j])} seeds {np.mean(by_q[j]):.3e}; bound on the "
                       f"mean {bound_text}; optimal sigma_(k+1) = {optimal:.3e}.")
        return out

    facts = {"sigma_(k+1)": f"{optimal:.3e}", "k + p": str(k + p), "runs": f"{seeds} seeds x {q + 1} values of q",
             "bound q = 0 / q = " + str(q): f"{theory.hmt_truncated_spectral(sigma, k, p, 0):.3e} / "
                                             f"{theory.hmt_truncated_spectral(sigma, k, p, q):.3e}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


RSVD = Lesson(
    key="rsvd",
    title="Randomized SVD: oversampling and power iterations (Halko-Martinsson-Tropp)",
    text=_RSVD_TEXT,
    params=(
        ParamSpec("k", "int", 5, "Target rank.", minimum=1, maximum=40),
        ParamSpec("oversampling", "int", 5, "Extra random columns p (the bound needs p >= 2).", minimum=0,
                  maximum=40),
        ParamSpec("power_iterations", "int", 2, "Power iterations q.", minimum=0, maximum=6),
        ParamSpec("decay", "float", 0.95, "Singular values sigma_j = decay^(j-1) (closer to 1: slower decay).",
                  minimum=0.5, maximum=0.995),
        ParamSpec("n", "int", 300, "Matrix size (dense).", minimum=50, maximum=1500),
        ParamSpec("seeds", "int", 4, "Random test matrices (each runs every q from 0 up).", minimum=1, maximum=5),
    ),
    build=_rsvd_build,
    references=("N. Halko, P.-G. Martinsson, J. A. Tropp, SIAM Review 53(2) (2011) 217-288, Thm 9.3, 10.5, 10.6, "
                "Cor. 10.10",),
    solvers=("randomized_svd",),
)
