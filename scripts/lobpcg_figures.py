"""Figures behind LOBPCG's defaults and bookkeeping (docs/benchmarks-lobpcg.md), one subcommand each.

* ``bookkeeping``: on the quick bench problems (``python -m explorer.bench --quick``), the share
  of a ``lobpcg`` solve spent building the per-iteration record (``Monitor.record``) and
  measuring the orthogonality loss it carries (``orthogonality_loss``), for our engine and for
  ``backend="torch"``: process CPU time (other jobs on a shared host do not count), the median
  share over ``--repeat`` runs and the fastest solve.
* ``block-sizes``: k = 1 with block size 1, 2, 3 (matvecs, CPU time): why
  ``default_block_size(1, n)`` is 1.
* ``float32-drift``: the float32 1-D Laplacian (n = 100, SA, k = 4, tol 10 sqrt(eps)) over
  seeds 0..59: iterations in all, the most for one seed, and how far the lowest recorded Ritz
  value went below lambda_1 (what ``OrthoStep._carried_gram`` guards).
* ``null-space-drift``: a dense n = 40 matrix with a 20-fold zero eigenvalue (SA, k = 2 and 5,
  seeds 0..5; ``tests/test_lobpcg.py``) and the quick dense problems at k = 10: matvecs and the
  lowest recorded Ritz value (what ``OrthoStep._amplifies_rounding`` guards).

Run with one thread, from the repository root::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=$PWD \\
        .venv/bin/python scripts/lobpcg_figures.py bookkeeping

Timings are of a shared host: compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from explorer import problems  # noqa: E402
from explorer.bench.matrix import QUICK_KEYS, TOL, make_problems  # noqa: E402
from explorer.solvers import _common  # noqa: E402
from explorer.solvers.lobpcg import lobpcg  # noqa: E402
from explorer.tracking import HistoryTracker  # noqa: E402


class _Timer:
    """Accumulated process CPU time of the wrapped calls."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - t
                self.calls += 1
        return timed


@contextmanager
def _timed_bookkeeping() -> Iterator[tuple[_Timer, _Timer]]:
    """Time ``Monitor.record`` and every ``orthogonality_loss`` the LOBPCG modules call."""
    record, loss = _Timer(), _Timer()
    original_record = _common.Monitor.record
    modules = [importlib.import_module(f"explorer.solvers.lobpcg.{name}") for name in ("engine", "torch_backend")]
    originals = [module.orthogonality_loss for module in modules]
    _common.Monitor.record = record.wrap(original_record)  # type: ignore[method-assign]
    for module, fn in zip(modules, originals):
        module.orthogonality_loss = loss.wrap(fn)
    try:
        yield record, loss
    finally:
        _common.Monitor.record = original_record  # type: ignore[method-assign]
        for module, fn in zip(modules, originals):
            module.orthogonality_loss = fn


def bookkeeping(repeat: int, tracked: bool) -> None:
    print("| problem | k | which | backend | iterations | matvecs | solve CPU s | record % | loss % | "
          "bookkeeping % | per iteration us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for problem in make_problems(QUICK_KEYS):
        for k, which in problem.cases:
            for backend in ("explorer", "torch"):
                totals, records, losses = [], [], []
                for _ in range(repeat):
                    with _timed_bookkeeping() as (record, loss):
                        t = time.process_time()
                        result = lobpcg(problem.operator, k, which=which, tol=TOL, seed=0, max_iter=10**6,
                                        backend=backend, tracker=HistoryTracker() if tracked else None)
                        total = time.process_time() - t
                    totals.append(total)
                    records.append(record.seconds / total)
                    losses.append(loss.seconds / total)
                rec, los = statistics.median(records), statistics.median(losses)
                both = statistics.median(r + c for r, c in zip(records, losses))
                per_it = 1e6 * both * min(totals) / max(result.n_iter, 1)
                print(f"| {problem.key} | {k} | {which} | {backend} | {result.n_iter} | {result.n_matvec} | "
                      f"{min(totals):.3f} | {100 * rec:.1f} | {100 * los:.1f} | {100 * both:.1f} | {per_it:.0f} |",
                      flush=True)


def block_sizes(repeat: int) -> None:
    print("| problem | which | block 1: matvecs, CPU s | block 2 | block 3 |")
    print("|---|---|---|---|---|")
    for problem in make_problems(QUICK_KEYS):
        for which in ("LA", "SA") if problem.family == "laplace2d" else ("LA",):
            cells = []
            for block in (1, 2, 3):
                best = math.inf
                for _ in range(repeat):
                    t = time.process_time()
                    result = lobpcg(problem.operator, 1, which=which, tol=TOL, seed=0, max_iter=10**6,
                                    block_size=block)
                    best = min(best, time.process_time() - t)
                cells.append(f"{result.n_matvec}, {best:.3f}")
            print(f"| {problem.key} | {which} | " + " | ".join(cells) + " |", flush=True)


def float32_drift(seeds: int) -> None:
    problem = problems.laplacian_1d(100)
    op = problem.operator.to(dtype=torch.float32)
    lam1 = float(problem.reference(4, "SA")[0])
    tol = 10 * math.sqrt(torch.finfo(torch.float32).eps)
    iterations, lowest, failed = [], math.inf, 0
    for seed in range(seeds):
        result = lobpcg(op, 4, which="SA", tol=tol, seed=seed)
        iterations.append(result.n_iter)
        failed += result.status.value != "converged"
        lowest = min(lowest, min(float(record.ritz_values.min()) for record in result.history))
    print(f"float32 1-D Laplacian n = 100, SA, k = 4, tol = {tol:.2e}, seeds 0..{seeds - 1}: "
          f"{sum(iterations)} iterations in all, at most {max(iterations)}, {failed} not converged; "
          f"lowest Ritz value - lambda_1 = {lowest - lam1:.2e} (eps ||A|| = {4 * torch.finfo(torch.float32).eps:.1e})")


def _null_space_matrix(n: int = 40) -> torch.Tensor:
    """The matrix of ``test_a_large_null_space_with_stored_products_converges_instead_of_drifting``."""
    import numpy as np

    rng = np.random.default_rng(n)
    lam = np.sort(np.concatenate([np.zeros(n // 2), rng.uniform(1, 2, n - n // 2)]))
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = torch.from_numpy((Q * lam) @ Q.T)
    return (A + A.T) / 2


def null_space_drift(seeds: int) -> None:
    A = _null_space_matrix()
    for k in (2, 5):
        cells = []
        for seed in range(seeds):
            result = lobpcg(A, k, which="SA", seed=seed, max_iter=5000)
            lowest = min(float(record.ritz_values.min()) for record in result.history)
            cells.append(f"{result.n_matvec} ({lowest:.0e})")
        print(f"| null space n = 40, k = {k} SA | " + " | ".join(cells) + " |", flush=True)
    for problem in make_problems([key for key in QUICK_KEYS if key.startswith("dense")]):
        for which in ("LA", "SA"):
            result = lobpcg(problem.operator, 10, which=which, seed=0, tol=TOL, max_iter=3000)
            print(f"| {problem.key}, k = 10 {which} | {result.n_matvec} | {result.status.value} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    p = sub.add_parser("bookkeeping", help="share of the solve spent on the per-iteration record")
    p.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    p.add_argument("--tracked", action="store_true", help="with a HistoryTracker (default: no tracker)")
    p = sub.add_parser("block-sizes", help="k = 1 with block size 1, 2, 3")
    p.add_argument("--repeat", type=int, default=3)
    p = sub.add_parser("float32-drift", help="float32 1-D Laplacian over seeds")
    p.add_argument("--seeds", type=int, default=60)
    p = sub.add_parser("null-space-drift", help="20-fold zero eigenvalue over seeds, dense k = 10")
    p.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.figure == "bookkeeping":
        bookkeeping(args.repeat, args.tracked)
    elif args.figure == "block-sizes":
        block_sizes(args.repeat)
    elif args.figure == "float32-drift":
        float32_drift(args.seeds)
    else:
        null_space_drift(args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
