"""Reproduce the Lanczos measurements quoted in docs/benchmarks-lanczos.md.

Usage (from the repository root, one torch thread, float64 unless said otherwise)::

    PYTHONPATH=$PWD python scripts/lanczos_measurements.py basis      # matvecs / time vs max_basis
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py keep-cap   # matvecs / time vs the restart cap
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py float32    # "partial" vs "full" in float32
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py eigh       # the projected eigh: torch vs LAPACK
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py cholesky   # 2 x 2 Cholesky: plain Python vs numpy
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py ritz-every # ritz_every=1 against "auto"
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py copy-check # hidden copies on 3-D Laplacians
    PYTHONPATH=$PWD python scripts/lanczos_measurements.py frontier   # n = 10^6, k = 10 LA (long)

Matvec counts are exact (every run is seeded); times are CPU seconds of this process and
depend on the load of the host (printed with the results).
"""

from __future__ import annotations

import argparse
import importlib
import math
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


def ritz_every() -> None:
    """The bench's n = 10^4 Laplacian and n = 1000 dense cases (tol 1e-6, seed 0): matvecs,
    records, looks (records without the 20 ms rule) and wall seconds (best of 3, interleaved)
    of ritz_every=1 against "auto"."""
    from explorer.bench.matrix import make_problems

    iteration = importlib.import_module("explorer.solvers.lanczos.iteration")
    interval = iteration.RECORD_INTERVAL_S
    for problem in make_problems(["laplace2d_N100", "dense_geometric_n1000", "dense_smallgap_n1000",
                                  "dense_cluster_n1000"]):
        for k, which in problem.cases:
            best = {1: math.inf, "auto": math.inf}
            runs = {}
            for _ in range(3):
                for every in (1, "auto"):
                    t0 = time.perf_counter()
                    runs[every] = lanczos(problem.operator, k, which=which, tol=1e-6, seed=0, ritz_every=every)
                    best[every] = min(best[every], time.perf_counter() - t0)
            iteration.RECORD_INTERVAL_S = math.inf
            looks = len(lanczos(problem.operator, k, which=which, tol=1e-6, seed=0).history)
            iteration.RECORD_INTERVAL_S = interval
            one, auto = runs[1], runs["auto"]
            print(f"{problem.key} k={k} {which}: every step {one.n_matvec} mv, {len(one.history)} records, "
                  f"{best[1]:.3f} s | auto {auto.n_matvec} mv, {len(auto.history)} records ({looks} looks), "
                  f"{best['auto']:.3f} s | ratio {best[1] / best['auto']:.2f}  ({_load()})")


def copy_check() -> None:
    """3-D Laplacians (triple eigenvalues), default block of 2: (1) steps a deflated block Lanczos
    from a random start needs before a hidden copy passes the k-th returned value (the test of
    copies._copy_check), (2) the sets returned with the check, over sizes, ends, k and seeds."""
    for N, which in ((6, "LA"), (10, "LA"), (10, "SA"), (20, "LA"), (30, "SA")):
        problem = problems.laplacian_3d(N)
        ev = np.sort(problem.eigenvalues.numpy())
        off = lanczos(problem.operator, 6, which=which, seed=0, copy_check="off")
        X = off.eigenvectors.T.contiguous()
        values = off.eigenvalues.numpy()
        theta_k, spread = values[-1], float(ev[-1] - ev[0])
        sign = 1.0 if which == "LA" else -1.0
        hidden = [v for v in np.unique(np.round(values, 10)) if abs(v - theta_k) > 1e-8
                  and np.sum(np.abs(ev - v) < 1e-9) > np.sum(np.abs(values - v) < 1e-9)]  # copies missing before k
        delta = min(abs(v - theta_k) for v in hidden) / spread if hidden else float("nan")
        g = torch.Generator().manual_seed(1)
        Q = [torch.linalg.qr((lambda Z: Z - (Z @ X.T) @ X)(torch.randn(2, X.shape[1], generator=g, dtype=torch.float64)).T)[0].T]
        found = None
        for step in range(1, 80):
            V = torch.cat(Q)
            AV = problem.operator.matmat(V.T).T
            AV = AV - (AV @ X.T) @ X
            T = V @ AV.T
            top = float(torch.linalg.eigvalsh(0.5 * (T + T.T))[-1 if which == "LA" else 0])
            if sign * (top - theta_k) > 1e-5 * abs(theta_k):
                found = step
                break
            W = AV[-2:] - ((AV[-2:] @ V.T) @ V)
            W = W - (W @ X.T) @ X
            Q.append(torch.linalg.qr(W.T)[0].T)
        print(f"3-D Laplacian N={N} {which} k=6: main run {off.n_matvec} matvecs, hidden copy surfaced after {found} "
              f"steps, delta {delta:.2g}, s sqrt(delta) {found * math.sqrt(delta):.2f}")
    bad = total = 0
    for N in (8, 10, 14, 20):
        problem = problems.laplacian_3d(N)
        ev = np.sort(problem.eigenvalues.numpy())
        for which, k in (("LA", 6), ("SA", 6), ("LA", 9), ("SA", 4)):
            ref = ev[::-1][:k] if which == "LA" else ev[:k]
            for seed in range(4):
                r = lanczos(problem.operator, k, which=which, seed=seed)
                total += 1
                bad += int(r.status.name != "CONVERGED"
                           or float(np.abs(r.eigenvalues.numpy() - ref).max() / np.abs(ref).max()) > 1e-5)
    print(f"with the check: {total - bad} of {total} runs returned the exact set (relative error <= 1e-5)")


def frontier() -> None:
    """The 10 largest eigenvalues of the 2-D Laplacian with n = 10^6 (N = 1000), tol 1e-6, defaults."""
    import resource

    from explorer.tracking import CallbackTracker

    problem = problems.laplacian_2d(1000)
    op = problem.operator
    x = torch.randn(op.shape[0], dtype=torch.float64)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        op.matvec(x)
        times.append(time.perf_counter() - t0)
    t_mv = float(np.median(times))
    last = [0.0]

    def progress(record) -> None:  # noqa: ANN001
        if time.perf_counter() - last[0] > 60:
            last[0] = time.perf_counter()
            print(f"  step {record.iteration}, {record.n_matvec} matvecs, {record.n_converged} converged, "
                  f"{record.elapsed_s:.0f} s  ({_load()})", flush=True)

    w0, c0 = time.perf_counter(), time.process_time()
    r = lanczos(op, 10, which="LA", tol=1e-6, seed=0, tracker=CallbackTracker(progress))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    ref = np.sort(problem.eigenvalues.numpy())[::-1][:10]
    err = float(np.max(np.abs(r.eigenvalues.numpy() - ref) / ref))
    print(f"{r.status.name}: {r.n_matvec} matvecs, {r.n_iter} steps, wall {wall:.0f} s, CPU {cpu:.0f} s, eigenvalue "
          f"error {err:.1e}, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB, one matvec "
          f"{t_mv * 1e3:.1f} ms, time / (matvecs x matvec) {wall / (r.n_matvec * t_mv):.2f}  ({_load()})")
    print(r.message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("basis", "keep-cap", "float32", "eigh", "cholesky", "ritz-every", "copy-check",
                                         "frontier"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"basis": basis, "keep-cap": keep_cap, "float32": float32, "eigh": eigh, "cholesky": cholesky,
     "ritz-every": ritz_every, "copy-check": copy_check, "frontier": frontier}[args.what]()


if __name__ == "__main__":
    main()
