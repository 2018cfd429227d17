"""Where a Lanczos solve's wall time goes, per part, next to ARPACK on the same problem.

Usage (from the repository root, one thread)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/lanczos_step_profile.py dense_smallgap_n1000 10 LA
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/lanczos_step_profile.py laplace2d_N100 10 LA

Each listed method of the solver is wrapped with a ``time.perf_counter`` accumulator (about
1 us per call of its own); the table gives milliseconds per solve, calls per solve and
microseconds per call, averaged over ``--repeat`` solves after 3 warm-up solves, and the
fastest lanczos and ARPACK (``eigsh``) solves of the same process, alternated, with their
ratio. ``apply`` is the product with A (its floor: ``t_mv`` per column); the nested parts
(``apply``, ``_partial_step`` and ``orthonormalize`` inside ``_step_block``) are counted in
both. Problems are those of ``python -m explorer.bench`` (``--problems`` keys).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import time
from typing import Any, Callable

import numpy as np
import scipy.sparse.linalg as sla
import torch

from explorer.bench import matrix as bench
from explorer.solvers.registry import solve

PARTS = ("apply", "_step_block", "_step_single", "_partial_step", "orthonormalize", "_restart", "_verify",
         "_finish", "_copy_check", "_next_look", "_thresholds", "_ghosts", "cgs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem")
    parser.add_argument("k", type=int)
    parser.add_argument("which")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = bench.make_problems([args.problem])[0]

    def ours() -> Any:
        return solve("lanczos", problem.operator, args.k, which=args.which, tol=problem.tol, seed=0, max_iter=10**6)

    def arpack() -> None:
        v0 = bench._start(problem.n, 1, 0).astype(problem.matrix.dtype)
        sla.eigsh(problem.matrix, k=args.k, which=args.which, tol=problem.tol, v0=v0)

    def fastest(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    walls = [(fastest(ours), fastest(arpack)) for _ in range(args.repeat)]
    t_ours, t_arpack = min(w[0] for w in walls), min(w[1] for w in walls)
    ratios = sorted(w[0] / w[1] for w in walls)

    iteration = importlib.import_module("explorer.solvers.lanczos.iteration")
    acc: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()

    def wrap(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                acc[label] += time.perf_counter() - t0
                calls[label] += 1
        setattr(owner, name, timed)

    for name in PARTS:
        if hasattr(iteration._Lanczos, name):
            wrap(iteration._Lanczos, name, name)
    wrap(iteration, "small_eigh", "small_eigh (loop)")
    wrap(importlib.import_module("explorer.solvers._common").Monitor, "record", "Monitor.record")
    for _ in range(3):
        ours()
    acc.clear()
    calls.clear()
    total = 0.0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = ours()
        total += time.perf_counter() - t0
    per = total / args.repeat
    print(f"{args.problem} k={args.k} {args.which}: {result.n_matvec} matvecs, {result.n_iter} steps; "
          f"fastest lanczos {t_ours * 1e3:.1f} ms, ARPACK {t_arpack * 1e3:.1f} ms, ratio {t_ours / t_arpack:.2f} "
          f"(median of pairs {np.median(ratios):.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f})")
    print(f"instrumented: {per * 1e3:.2f} ms per solve, {per / result.n_iter * 1e6:.0f} us per step")
    for label in sorted(acc, key=lambda lab: -acc[lab]):
        print(f"  {label:20s} {acc[label] / args.repeat * 1e3:8.2f} ms  {calls[label] / args.repeat:6.1f} calls"
              f"  {acc[label] / calls[label] * 1e6:8.1f} us/call")


if __name__ == "__main__":
    main()
