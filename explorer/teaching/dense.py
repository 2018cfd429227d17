"""Lesson: The dense reference: what eigh costs as n grows.

The explanation is ``DENSE.text``; ``DENSE.build(values)`` returns the problem, the runs and the
charts (measured curves against the theory of :mod:`explorer.analysis.theory`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from explorer import problems
from explorer.analysis import theory
from explorer.analysis.compare import CompareSettings, RunConfig, RunOutcome
from explorer.solvers.registry import ParamSpec
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series

__all__ = ["DENSE"]


_DENSE_TEXT = r"""
The dense symmetric eigensolver (LAPACK's `syevd` behind `torch.linalg.eigh`) reduces $A$ to
tridiagonal form with Householder reflections and then solves the tridiagonal problem: about
$9n^3$ flops with eigenvectors (Golub & Van Loan 8.3) and $n^2$ numbers of memory for each
copy of the matrix. Doubling $n$ multiplies the time by 8. The dots are measured times of our
`eigh` solver (assembly included), the solid line a least-squares fit $c\,n^a$, the dashed
line $c\,n^3$ through the largest measurement.

An iterative method needs only products $Ax$: for a sparse matrix with a few nonzeros per row
that is $O(n)$ work per step, and a few dozen steps find well separated extreme eigenvalues.
The last run does exactly that on a sparse matrix far too large for `eigh` (the separate dot).
"""


def _dense_build(values: Mapping[str, Any]) -> LessonSetup:
    n_max, count, big = int(values["n_max"]), int(values["sizes"]), int(values["iterative_n"])
    sizes = sorted({int(round(x)) for x in np.geomspace(max(50, n_max // 8), n_max, count)})
    size_problems = [problems.laplacian_1d(n) for n in sizes]
    # A sparse diagonal with four separated top eigenvalues over a bulk in [0, 1]: Krylov-friendly.
    top = np.asarray([2.0, 1.8, 1.6, 1.4])
    bulk = np.linspace(1.0, 0.0, big - top.size)
    sparse_problem = problems.diagonal(np.concatenate([top, bulk]))
    configs = tuple(RunConfig("eigh", {}, label=f"eigh n = {n}", problem=pr) for n, pr in zip(sizes, size_problems))
    configs += (RunConfig("lanczos", {"reorthogonalization": "full"}, label=f"lanczos n = {big:,}",
                          problem=sparse_problem),)
    settings = CompareSettings(k=4, which="LA", tol=1e-8, max_iter=300, budget=None, seed=0)
    memory_gb = 8.0 * big * big / 1e9

    def measured(outcomes: Sequence[RunOutcome]) -> tuple[np.ndarray, np.ndarray]:
        ns, ts = [], []
        for outcome in outcomes[: len(sizes)]:
            if outcome.result is not None:
                ns.append(sizes[outcome.index])
                ts.append(float(outcome.result.elapsed_s))
        return np.asarray(ns, dtype=float), np.asarray(ts, dtype=float)

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        ns, ts = measured(outcomes)
        series: list[Series] = [Series("eigh: measured", ns, ts, mode="markers", color=0)]
        last = outcomes[-1]
        grid = np.geomspace(sizes[0], max(big, sizes[-1]), 60)
        if ns.size >= 2:
            a, c = theory.fit_power_law(ns, ts)
            series.append(Series(f"fit: c n^{a:.2f}", grid, c * grid ** a, role="measured", color=0))
        if ns.size >= 1:
            c3 = ts[-1] / ns[-1] ** 3
            series.append(Series("c n^3 (through the largest)", grid, c3 * grid ** 3, role="theory", color=0))
        if last.result is not None:
            series.append(Series(f"lanczos, k = 4, n = {big:,} (sparse)", np.asarray([float(big)]),
                                 np.asarray([float(last.result.elapsed_s)]), mode="markers", color=3))
        return [Chart("dense_cost", "Time against n", "n", "seconds", tuple(series), log_y=True, log_x=True)]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        ns, ts = measured(outcomes)
        out = []
        if ns.size >= 2:
            a, c = theory.fit_power_law(ns, ts)
            predicted = ts[-1] * (big / ns[-1]) ** 3
            out.append(f"Fitted exponent a = {a:.2f} (theory 3; small n are dominated by overheads). "
                       f"At n = {big:,}, c n^3 predicts {predicted:,.0f} s ({predicted / 3600:.1f} h) and the "
                       f"dense matrix alone needs {memory_gb:,.0f} GB.")
            flops = float(theory.eigh_flops(ns[-1]))
            out.append(f"At n = {int(ns[-1])}: 9 n^3 = {flops:.2e} flops in {ts[-1]:.3f} s, "
                       f"{flops / max(ts[-1], 1e-9) / 1e9:.1f} Gflop/s.")
        last = outcomes[-1]
        if last.result is not None:
            out.append(f"lanczos on the sparse n = {big:,} matrix: {last.result.status.value}, "
                       f"{last.result.n_matvec} matvecs, {last.result.elapsed_s:.2f} s.")
        return out

    facts = {"sizes": ", ".join(str(n) for n in sizes), "9 n^3 at n_max": f"{theory.eigh_flops(sizes[-1]):.2e} flops",
             f"dense memory at n = {big:,}": f"{memory_gb:,.0f} GB per copy"}
    return LessonSetup(size_problems[-1], configs, settings, charts, notes, facts)


DENSE = Lesson(
    key="dense",
    title="The dense reference: what eigh costs as n grows",
    text=_DENSE_TEXT,
    params=(
        ParamSpec("n_max", "int", 800, "Largest n given to dense eigh.", minimum=100, maximum=3000),
        ParamSpec("sizes", "int", 5, "How many sizes (geometrically spaced up to n_max).", minimum=2, maximum=8),
        ParamSpec("iterative_n", "int", 200_000, "Size of the sparse problem for the iterative run.",
                  minimum=10_000, maximum=2_000_000),
    ),
    build=_dense_build,
    references=("Golub & Van Loan, Matrix Computations, 4th ed., 8.3 (symmetric QR: ~9 n^3 flops with vectors)",
                "LAPACK Users' Guide, xSYEVD"),
    solvers=("eigh", "lanczos"),
)
