"""Reproduce the Lanczos measurements quoted in docs/benchmarks-lanczos.md.

Usage (from the repository root, one torch thread, float64 unless said otherwise)::

    PYTHONPATH=$PWD python scripts/lanczos_measurements.py basis      # matvecs / time vs max_basis
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py keep-cap   # matvecs / time vs the restart cap
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py float32    # "partial" vs "full" in float32
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py eigh       # the projected eigh: torch vs LAPACK
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py cholesky   # 2 x 2 Cholesky: plain Python vs numpy

Matvec counts are exact (every run is seeded); times are CPU seconds of this process and
depend on the load of the host (printed with the results).
"""

from __future__ import annotations

import argparse
import importlib
import os
import time

import numpy as np
import torch

from explorer import problems
from explorer.solvers.lanczos import lanczos


def _timed(fn, *args, **kwargs):
    t0 = time.process_time()
    result = fn(*args, **kwargs)
    return result, time.process_time() - t0


def _load() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def basis() -> None:
    """2-D Laplacian n = 10^5, tol 1e-6: matvecs and CPU time for several max_basis."""
    op = problems.laplacian_2d(316).operator
    for k, which, sizes in ((1, "LA", (20, 30, 40, 60)), (10, "LA", (50, 60, 80, 100))):
        for m in sizes:
            r, cpu = _timed(lanczos, op, k, which=which, tol=1e-6, seed=0, max_basis=m)
            print(f"k={k} {which} max_basis={m}: {r.n_matvec} matvecs, {cpu:.1f} s CPU, {r.status.name}  ({_load()})")


def keep_cap() -> None:
    """2-D Laplacian n = 10^5, k = 10 LA: the largest kept share of the free basis (restart._KEEP_CAP)."""
    restart = importlib.import_module("explorer.solvers.lanczos.restart")
    op = problems.laplacian_2d(316).operator
    saved = restart._KEEP_CAP
    try:
        for m, caps in ((60, (0.7, 0.5)), (80, (0.5, 0.4))):
            for cap in caps:
                restart._KEEP_CAP = cap
                r, cpu = _timed(lanczos, op, 10, which="LA", tol=1e-6, seed=0, max_basis=m)
                print(f"max_basis={m} cap={cap}: {r.n_matvec} matvecs, {cpu:.1f} s CPU, {r.status.name}  ({_load()})")
    finally:
        restart._KEEP_CAP = saved


def float32() -> None:
    """float32 2-D Laplacians, tol 1e-3 (tighter tolerances are near float32's rounding level on
    the small eigenvalues): "partial" against "full" (seed 0)."""
    cases = ((100, 1, "SA", 1e-3), (316, 1, "SA", 1e-3), (316, 1, "LA", 1e-3), (316, 10, "LA", 1e-3))
    for N, k, which, tol in cases:
        op = problems.laplacian_2d(N).operator.to(dtype=torch.float32)
        for mode in ("partial", "full"):
            r, cpu = _timed(lanczos, op, k, which=which, tol=tol, seed=0, reorthogonalization=mode)
            print(f"n={N * N} k={k} {which} tol={tol:g} {mode}: {r.status.name}, {r.n_matvec} matvecs, "
                  f"{cpu:.1f} s CPU  ({_load()})")


def eigh() -> None:
    """Median / 99th percentile of one eigh of a random symmetric m x m matrix (microseconds),
    torch.linalg.eigh (MKL) on 1 and 2 torch threads against scipy's and numpy's LAPACK
    (OpenBLAS; its threads follow OPENBLAS_NUM_THREADS, read at load), interleaved."""
    import scipy.linalg as sl
    from scipy.linalg import lapack

    rng = np.random.default_rng(0)
    fns = {
        "torch": lambda H: torch.linalg.eigh(torch.from_numpy(H)),
        "scipy dsyevd": lambda H: lapack.dsyevd(H, compute_v=1, lower=1),
        "scipy dsyevr": lambda H: sl.eigh(H, driver="evr", check_finite=False),
        "numpy": np.linalg.eigh,
    }
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}  ({_load()})")
    saved = torch.get_num_threads()
    try:
        for m in (20, 42, 82, 122):
            A = rng.standard_normal((m, m))
            H = 0.5 * (A + A.T)
            cells = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times: dict[str, list[float]] = {f: [] for f in fns}
                for _ in range(200):
                    for name, fn in fns.items():
                        t0 = time.perf_counter()
                        fn(H)
                        times[name].append(time.perf_counter() - t0)
                for name in fns:
                    a = np.array(times[name]) * 1e6
                    cells.append(f"{name} (torch {threads}t) {np.median(a):.0f} / {np.percentile(a, 99):.0f}")
            print(f"m={m}: " + "; ".join(cells))
    finally:
        torch.set_num_threads(saved)


def cholesky() -> None:
    """Median microseconds of a 2 x 2 Cholesky factor, numpy.linalg against linalg.small_cholesky, interleaved."""
    from explorer.solvers.lanczos.linalg import small_cholesky

    G = np.array([[2.0, 1.0], [1.0, 2.0]])
    a, b = [], []
    for _ in range(20000):
        t0 = time.perf_counter()
        np.linalg.cholesky(G)
        t1 = time.perf_counter()
        small_cholesky(G)
        b.append(time.perf_counter() - t1)
        a.append(t1 - t0)
    print(f"numpy.linalg.cholesky {np.median(a) * 1e6:.1f} us, small_cholesky {np.median(b) * 1e6:.1f} us  ({_load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("basis", "keep-cap", "float32", "eigh", "cholesky"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"basis": basis, "keep-cap": keep_cap, "float32": float32, "eigh": eigh, "cholesky": cholesky}[args.what]()


if __name__ == "__main__":
    main()
