"""Benchmark: our registered solvers against ARPACK, PRIMME, scipy and torch LOBPCG, each run in its own process.

Run ``python -m explorer.bench`` (the full set: 2-D Laplacians n = 10^4 and 10^5, dense
prescribed spectra n = 1000 and 4000; long, over an hour on a loaded 2-core host) or
``python -m explorer.bench --quick`` (n = 10^4 Laplacian and n = 1000 dense; one to two
minutes on a 2-core host). ``--problems`` picks problem keys (e.g.
``--problems laplace2d_N316`` runs the n = 10^5 Laplacian alone), ``--solvers`` picks rows,
``--csv`` writes the table, ``--mem-gb`` / ``--timeout`` set the per-run limits below.
Each row is printed (flushed) as soon as its run ends; the full table follows at the end.

What is measured (the method of ../shared/PEERS.md, section 3):

* **Problems.** ``laplace2d_N{100,316}``: the 5-point Dirichlet Laplacian (n = N^2), k = 1
  and 10, LA and SA; reference analytic (``4 - 2 cos(i pi/(N+1)) - 2 cos(j pi/(N+1))``, with
  exact double eigenvalues). ``dense_{geometric,smallgap,cluster}_n{1000,4000}``: ``Q diag(lam)
  Q^T`` with a Haar-random Q, k = 10 LA; reference = the prescribed lam (the assembled
  matrix is within ~n eps ||A|| of it). Everything float64, tol = 1e-6 (relative residual).
* **Rows.** ``lanczos`` (defaults: partial re-orthogonalization, block size 1 for k = 1 and 2
  otherwise), ``lanczos_full`` (full re-orthogonalization), ``lanczos_b1`` (block size 1 for
  every k, like ARPACK and PRIMME: fewer matvecs on distinct eigenvalues, but it cannot see
  the second copy of a double eigenvalue, so it returns the wrong set on the Laplacian; the
  row shows what the default block of 2 costs and buys; not run for k = 1, where it is the
  default), ``lobpcg``, ``power_iteration``, then the peers. Opt-in: ``chebyshev`` (``--solvers
  chebyshev ...``), and the rectangular SVD problems (``--svd``; ``golub_kahan`` against scipy's
  ``svds`` and ``torch.svd_lowrank``, see the comment of that section; one small one is in ``--quick``).
* **Shift-invert** (opt-in: ``--problems laplace2d_si_N316``): the same Laplacian, k = 10
  nearest sigma, cases ``SI0`` (sigma = 0: the 10 smallest) and ``SImid`` (``middle_shift``: near
  4, where the nearest 10 are well defined). Rows ``lanczos_si`` / ``lobpcg_si`` (our solvers with
  ``sigma``), ``arpack_si`` (``eigsh(sigma=..., which="LM")`` with ``OPinv`` = ``splu(A - sigma I)``,
  factored inside the timed region) and ``scipy_lobpcg_lu`` (scipy's LOBPCG with the LU of A as
  preconditioner; SI0 only). These rows run only on these cases, the others never. Matvecs are
  solves with the factorization plus products with A (PEERS.md's convention); the ratios are
  against ``arpack_si``.
* **Counting.** Every solver gets a counting operator: a scipy ``LinearOperator`` (ARPACK,
  PRIMME, scipy LOBPCG), an explorer ``LinearOperator`` (our solvers) or, for
  ``torch.lobpcg``, which only accepts a tensor, a temporary wrapper around
  ``torch._linalg_utils.matmul`` that counts products with the problem's tensor. One
  column is one matvec.
* **Cap.** Each run stops after ``cap`` seconds of process CPU time (30 s; 5 s with
  ``--quick``), enforced inside the counting operator by raising; such rows read ``CAP``. A
  solver that hit the cap (or the memory cap, or the wall-clock limit) on a problem is
  skipped on the larger instances of the same problem kind and case (a cap on
  ``laplace2d_N100`` skips ``laplace2d_N316``), also across ``--problems`` in one run.
* **Isolation and memory cap.** Every (solver, problem, case) runs in a child process forked
  from the benchmark after the problem is built (the child shares the problem's memory
  copy-on-write; nothing is rebuilt or pickled; only the row's numbers come back through a
  pipe). The child sets ``RLIMIT_AS`` to its address space at the fork plus ``--mem-gb`` GB
  (default 4 GB, or a quarter of physical memory if that is less; 0 = no cap), so an
  allocation past it fails inside the run (numpy ``MemoryError``, torch "can't allocate
  memory") and the row reads ``MEM`` with the cap and the peak RSS growth in ``note``
  (``MEM(cap 4 GB, peak RSS +3.98 GB): MemoryError: ...``); a child that dies of a signal
  reads ``FAIL`` (``MEM`` if it had grown to 80 % of the cap). A wall-clock limit
  (``--timeout``, default ``3 cap + 6 overhead_max_s + 3 repeat_below + 60`` s) backs up the CPU cap for
  work outside the counted matvecs: past it the child is killed and the row reads
  ``CAP(wall ...)``. CPU and wall time are measured inside the child around the solve
  only (problem construction is in the parent, before the fork). A run under 2 s CPU
  (``--repeat-below``) is repeated in the same child (up to 5 runs, no new one after twice
  that; ``runs``) and the fastest
  counts, as ``timeit`` does: the first run of a short solve in a fresh child is slower than
  the next ones, and a shared host adds noise (docs/benchmarks.md). The row is the fastest run (its matvecs and its answer); every runner is
  seeded, so the runs are the same run, except PRIMME's, whose matvec count varies from call
  to call in one process. The progress line of
  each run shows its peak RSS (``peak=``: the child's ``ru_maxrss``, which includes the
  pages it shares with the parent, and the growth over the start). ``--no-isolate`` (or
  ``run_benchmark(..., isolate=False)``) runs everything in one process, without limits.
* **Accuracy.** ``eig_err``: max relative error of the returned set, sorted in ``which``
  order, against the reference (a missed copy of a double eigenvalue shows as ~1e-3 to
  1e-4). ``resid``: max ``||A v - lambda v|| / (|lambda| ||v||)``, computed here with the
  uncounted matrix. ``ok``: all k values returned and ``eig_err <= 1e-5``.
* **Ratios** ``mv/arpack`` and ``wall/arpack``: this row divided by ARPACK's row on the same
  problem (below 1: better than ARPACK).
* **Tracker overhead** (``tracker_%``, lanczos rows): CPU time of the solve with a
  ``HistoryTracker`` recording every iteration against the same solve without a tracker
  (fastest of 3 alternating runs each, on problems whose solve takes under ``overhead_max_s``). The
  per-iteration record itself is built in both runs (``Monitor.record`` is unconditional), so
  the column is what a tracker adds; ``record_%`` is the measured cost of building the
  records (``Monitor.record``) as a share of the solve.
* **Threads.** One thread everywhere: ``torch.set_num_threads(1)`` (in the parent and again
  in each child), and when run as a module the process re-executes itself once with
  ``OMP/OPENBLAS/MKL_NUM_THREADS=1`` set (OpenBLAS reads them only at load time; the forked
  children inherit the loaded libraries and the environment). Wall and CPU time are both
  reported; the host is shared.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import select
import signal
import struct
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse.linalg as sla
import torch

from explorer.operators import CountedOperator, DenseOperator, LinearOperator, SparseOperator
from explorer.solvers import SOLVERS, solve
from explorer.solvers import _common as solver_common
from explorer.solvers.lanczos import default_block_size
from explorer.tracking import HistoryTracker

__all__ = ["BenchProblem", "PROBLEM_KEYS", "QUICK_KEYS", "PEERS", "make_problems", "run_benchmark", "main",
           "SVDBenchProblem", "SVD_KEYS", "SVD_QUICK_KEYS", "SVD_OURS", "SVD_PEERS"]

TOL = 1e-6
CORRECT_ERR = 1e-5
LAPLACE_CASES = ((1, "LA"), (1, "SA"), (10, "LA"), (10, "SA"))
DENSE_CASES = ((10, "LA"),)
PROBLEM_KEYS = ("laplace2d_N100", "laplace2d_N316", "dense_geometric_n1000", "dense_smallgap_n1000",
                "dense_cluster_n1000", "dense_geometric_n4000", "dense_smallgap_n4000", "dense_cluster_n4000")
QUICK_KEYS = ("laplace2d_N100", "dense_geometric_n1000", "dense_smallgap_n1000", "dense_cluster_n1000")
# Shift-invert problems (opt-in: --problems laplace2d_si_N316): the 2-D Laplacian, k = 10 nearest sigma,
# case "SI0" (sigma = 0: the 10 smallest) and "SImid" (sigma near the middle of the spectrum, 4).
SHIFT_INVERT_KEYS = ("laplace2d_si_N100", "laplace2d_si_N316")
SHIFT_INVERT_CASES = ((10, "SI0"), (10, "SImid"))
# Rows: our registry solvers (those registered), then the peers.
OURS = ("lanczos", "lanczos_full", "lanczos_b1", "lobpcg", "power_iteration")
PEERS = ("arpack", "primme", "scipy_lobpcg", "torch_lobpcg")
# Rows of the shift-invert cases only (and only they run there): ours with sigma, ARPACK's mode 3 with
# SuperLU, scipy LOBPCG with the LU of A as preconditioner (SI0 only: LOBPCG finds extreme values).
SHIFT_INVERT_ROWS = ("lanczos_si", "lobpcg_si", "arpack_si", "scipy_lobpcg_lu")
COLUMNS = ["problem", "n", "k", "which", "solver", "status", "ok", "matvecs", "wall_s", "cpu_s", "runs", "eig_err",
           "resid", "mv/arpack", "wall/arpack", "tracker_%", "record_%", "note"]
# A run faster than REPEAT_BELOW_S CPU seconds is repeated (at most REPEAT_MAX runs in all, and
# no new run once twice that is spent), and the fastest counts: the first run of a short solve
# in a fresh child is slower than the runs after it (first calls into LAPACK, first touches of
# fresh memory), and the host is shared (docs/benchmarks.md has the figures).
REPEAT_BELOW_S = 2.0  # --repeat-below; no new run once twice that is spent
REPEAT_MAX = 5


# ----------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------
@dataclass
class BenchProblem:
    """One matrix with its exact spectrum; several (k, which) cases run on it.

    Attributes:
        key: e.g. ``laplace2d_N100``.
        operator: explorer operator (SparseOperator / DenseOperator, float64).
        matrix: the same matrix for the peers (scipy CSR or numpy array; shares memory).
        tensor: the same matrix as a torch tensor (sparse CSR or dense) for torch.lobpcg.
        eigenvalues: all n exact eigenvalues, ascending (numpy float64).
        cases: (k, which) pairs.
        family: "laplace2d" or "dense" (the skip rule compares problems of the same key without
            its size, e.g. dense_smallgap_n1000 and dense_smallgap_n4000).
    """

    key: str
    operator: LinearOperator
    matrix: Any
    tensor: torch.Tensor
    eigenvalues: np.ndarray
    cases: tuple[tuple[int, str], ...]
    family: str
    description: str = ""
    sigmas: dict[str, float] = field(default_factory=dict)  # shift-invert cases: "SI0" -> 0.0, ...

    @property
    def n(self) -> int:
        return int(self.operator.shape[0])

    def reference(self, k: int, which: str) -> np.ndarray:
        ev = self.eigenvalues
        if which in self.sigmas:  # the k nearest sigma, nearest first
            return ev[np.argsort(np.abs(ev - self.sigmas[which]), kind="stable")][:k].copy()
        return ev[::-1][:k].copy() if which == "LA" else ev[:k].copy()


def _laplacian(N: int, cases: Sequence[tuple[int, str]]) -> BenchProblem:
    from explorer import problems  # local: problems imports the solver registry

    problem = problems.laplacian_2d(N)
    op = problem.operator
    assert isinstance(op, SparseOperator)
    assert problem.eigenvalues is not None
    return BenchProblem(f"laplace2d_N{N}", op, op.to_scipy(), op.matrix, problem.eigenvalues.numpy(),
                        tuple(cases), "laplace2d", problem.description)


def middle_shift(eigenvalues: np.ndarray, k: int, centre: float = 4.0) -> float:
    """A shift near ``centre`` (the middle of the Laplacian's spectrum, itself an N-fold eigenvalue)
    whose k nearest eigenvalues are well defined: a gap of at least 1e-6 after the k-th distance,
    and no eigenvalue within 1e-3 of the shift (so the reference set is not a matter of rounding)."""
    for step in range(1, 2000):
        sigma = centre - 0.37e-3 * step
        d = np.sort(np.abs(eigenvalues - sigma))
        if d[0] > 1e-5 and d[k] - d[k - 1] > 1e-6:
            return float(sigma)
    raise ValueError("no shift with a well-defined nearest set found near the centre")


def _laplacian_si(N: int, cases: Sequence[tuple[int, str]]) -> BenchProblem:
    problem = _laplacian(N, cases)
    k = max(c[0] for c in cases)
    problem.key, problem.family = f"laplace2d_si_N{N}", "laplace2d_si"
    problem.sigmas = {"SI0": 0.0, "SImid": middle_shift(problem.eigenvalues, k)}
    return problem


def dense_spectrum(kind: str, n: int) -> np.ndarray:
    """The prescribed spectra of PEERS.md (descending).

    geometric: 0.8^(i-1). smallgap: 1, 0.99, ..., 0.90, then a bulk on [0, 0.89].
    cluster: 6 values at 1 and 6 at 0.5 with relative spacing 1e-4, then a bulk on [0, 0.3].
    """
    if kind == "geometric":
        return 0.8 ** np.arange(n, dtype=np.float64)
    if kind == "smallgap":
        top = 1.0 - 0.01 * np.arange(11)
        return np.concatenate([top, np.linspace(0.89, 0.0, n - 11)])
    if kind == "cluster":
        c1 = 1.0 * (1.0 - 1e-4 * np.arange(6))
        c2 = 0.5 * (1.0 - 1e-4 * np.arange(6))
        return np.concatenate([c1, c2, np.linspace(0.3, 0.0, n - 12)])
    raise ValueError(f"unknown dense spectrum {kind!r}; use geometric, smallgap or cluster")


def _dense(kind: str, n: int, cases: Sequence[tuple[int, str]], seed: int = 0) -> BenchProblem:
    lam = dense_spectrum(kind, n)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, n))
    Q, R = np.linalg.qr(Z)
    Q *= np.sign(np.diag(R))  # Haar measure (Mezzadri 2007)
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    tensor = torch.from_numpy(A)
    return BenchProblem(f"dense_{kind}_n{n}", DenseOperator(tensor), A, tensor, np.sort(lam), tuple(cases),
                        "dense", f"dense Q diag(lam) Q^T, {kind} spectrum, n = {n}")


def make_problems(keys: Sequence[str], *, cases: Sequence[tuple[int, str]] | None = None) -> list[BenchProblem]:
    """Build the problems named by ``keys`` (``laplace2d_N<N>`` or ``dense_<kind>_n<n>``).

    ``cases`` overrides the default (k, which) pairs (tests use small ones).
    """
    out: list[BenchProblem] = []
    for key in keys:
        parts = key.split("_")
        if parts[0] == "svd":
            out.append(_svd_problem(key, cases))
        elif parts[0] == "laplace2d" and len(parts) == 3 and parts[1] == "si" and parts[2].startswith("N"):
            out.append(_laplacian_si(int(parts[2][1:]), cases or SHIFT_INVERT_CASES))
        elif parts[0] == "laplace2d" and len(parts) == 2 and parts[1].startswith("N"):
            out.append(_laplacian(int(parts[1][1:]), cases or LAPLACE_CASES))
        elif parts[0] == "dense" and len(parts) == 3 and parts[2].startswith("n"):
            out.append(_dense(parts[1], int(parts[2][1:]), cases or DENSE_CASES))
        else:
            raise ValueError(f"unknown problem key {key!r}; use laplace2d_N<N>, laplace2d_si_N<N> (shift-invert) or "
                             f"dense_<geometric|smallgap|cluster>_n<n>"
                             f" (defaults: {', '.join(PROBLEM_KEYS)})")
    return out


# ----------------------------------------------------------------------------------------
# Counting and the cap
# ----------------------------------------------------------------------------------------
class CapReached(Exception):
    """Raised inside a counting operator when a run exceeds its CPU-time cap."""


class Budget:
    """Counts matvec columns and raises :class:`CapReached` past ``cap_s`` CPU seconds."""

    def __init__(self, cap_s: float) -> None:
        self.cap_s = cap_s
        self.count = 0
        self.calls = 0
        self.capped = False
        self.t0 = time.process_time()

    def charge(self, columns: int) -> None:
        self.count += int(columns)
        self.calls += 1
        if time.process_time() - self.t0 > self.cap_s:
            self.capped = True
            raise CapReached(f"CAP({self.count})")


class _CountingScipy(sla.LinearOperator):
    def __init__(self, matrix: Any, budget: Budget) -> None:
        super().__init__(dtype=np.float64, shape=matrix.shape)
        self.matrix, self.budget = matrix, budget

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        self.budget.charge(1)
        return self.matrix @ x.reshape(-1)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        self.budget.charge(X.shape[1])
        return self.matrix @ X

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)


class _CountingOperator(CountedOperator):
    """Our operator contract around the problem's operator, charging a :class:`Budget`. A
    ``CountedOperator`` (a view that keeps the matrix), so that shift-invert can factor it."""

    def __init__(self, base: LinearOperator, budget: Budget) -> None:
        super().__init__(base)
        self.budget = budget

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        self.budget.charge(1)
        return self.base._matvec(x)

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        self.budget.charge(X.shape[1])
        return self.base._matmat(X)

    def diagonal(self) -> torch.Tensor | None:
        return self.base.diagonal()

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def rows_kernel(self) -> bool:
        return self.base.rows_kernel

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:
        self.budget.charge(Xt.shape[0])
        self.base._matvecs_into(Xt, out)


# ----------------------------------------------------------------------------------------
# Runners: each returns (values (<=k,), vectors (n, <=k)) as numpy, or raises CapReached
# ----------------------------------------------------------------------------------------
def _start(n: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, cols)) if cols > 1 else \
        np.random.default_rng(seed).standard_normal(n)


def _run_ours(name: str, extras: dict[str, Any]) -> Callable[..., tuple[np.ndarray, np.ndarray, str]]:
    def runner(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
               tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
        op = _CountingOperator(problem.operator, budget)
        result = solve(name, op, k, which=which, tol=TOL, seed=seed, max_iter=10**6, tracker=tracker, **extras)
        note = result.status.value if result.status.value != "converged" else ""
        return (result.eigenvalues.double().numpy(), result.eigenvectors.double().numpy(),
                (note + " " + f"{result.n_iter} it").strip())
    return runner


def _run_arpack(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    op = _CountingScipy(problem.matrix, budget)
    values, vectors = sla.eigsh(op, k=k, which=which, tol=TOL, v0=_start(problem.n, 1, seed))
    return values, vectors, ""


def _run_primme(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    import primme

    op = _CountingScipy(problem.matrix, budget)

    def convtest(value: float, vector: Any, residual_norm: float) -> bool:
        return bool(residual_norm <= TOL * abs(value))

    values, vectors = primme.eigsh(op, k, which=which, tol=TOL, convtest=convtest, v0=_start(problem.n, 1, seed)[:, None])
    return values, vectors, "default method (block size 1)"


def _run_scipy_lobpcg(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                      tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    op = _CountingScipy(problem.matrix, budget)
    scale = float(np.min(np.abs(problem.reference(k, which))))
    X = np.random.default_rng(seed).standard_normal((problem.n, k))
    values, vectors = sla.lobpcg(op, X, tol=TOL * scale, maxiter=10**6, largest=(which == "LA"))
    return values, vectors, "block = k, tol = 1e-6 |lambda_k| (absolute)"


def _run_torch_lobpcg(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                      tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    import torch._linalg_utils as lu

    A = problem.tensor
    if problem.n < 3 * k:
        raise ValueError("torch.lobpcg needs n >= 3 k")
    X = torch.from_numpy(np.random.default_rng(seed).standard_normal((problem.n, k)))
    # torch's criterion: ||r|| / ((||A||_est + |lambda|) ||x||) with ||A||_est = ||A X0||_F / ||X0||_F
    # (about the RMS eigenvalue); map our relative 1e-6 onto it as PEERS.md does.
    rms = float(torch.linalg.matrix_norm(A @ X) / torch.linalg.matrix_norm(X))
    lam = float(np.min(np.abs(problem.reference(k, which))))
    tol = TOL * lam / (rms + lam)
    original = lu.matmul

    def counting(first: Any, second: Any) -> Any:
        if first is A:
            budget.charge(second.shape[-1] if second.ndim > 1 else 1)
        return original(first, second)

    lu.matmul = counting
    try:
        values, vectors = torch.lobpcg(A, k=k, X=X, largest=(which == "LA"), tol=tol, niter=-1, method="ortho")
    finally:
        lu.matmul = original
    return values.numpy(), vectors.numpy(), "method=ortho"


def _run_ours_si(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray, str]]:
    def runner(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
               tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
        op = _CountingOperator(problem.operator, budget)
        result = solve(name, op, k, which="LM", sigma=problem.sigmas[which], tol=TOL, seed=seed, tracker=tracker)
        budget.count = result.n_matvec  # solves with the factorization + products with A (counted there too)
        budget.charge(0)
        note = result.status.value if result.status.value != "converged" else ""
        return (result.eigenvalues.double().numpy(), result.eigenvectors.double().numpy(),
                (note + f" {result.n_iter} it; matvecs = solves + A products").strip())
    return runner


class _CountingSolve(sla.LinearOperator):
    """``x -> M^-1 x`` through a SuperLU factorization, one solve per column charged to a Budget."""

    def __init__(self, lu: Any, n: int, budget: Budget) -> None:
        super().__init__(dtype=np.float64, shape=(n, n))
        self.lu, self.budget = lu, budget

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        self.budget.charge(1)
        return self.lu.solve(np.asarray(x, dtype=np.float64).reshape(-1))

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        self.budget.charge(X.shape[1])
        return self.lu.solve(np.asarray(X, dtype=np.float64))


def _run_arpack_si(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                   tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    import scipy.sparse as sp

    sigma = problem.sigmas[which]
    A = sp.csc_matrix(problem.matrix)
    lu = sla.splu((A - sigma * sp.identity(problem.n, format="csc")).tocsc())  # what eigsh does, in the timed region
    values, vectors = sla.eigsh(A, k=k, sigma=sigma, which="LM", tol=TOL, v0=_start(problem.n, 1, seed),
                                OPinv=_CountingSolve(lu, problem.n, budget))
    return values, vectors, "mode 3, OPinv = splu(A - sigma I); matvecs = solves"


def _run_scipy_lobpcg_lu(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                         tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    import scipy.sparse as sp

    lu = sla.splu(sp.csc_matrix(problem.matrix))
    op = _CountingScipy(problem.matrix, budget)
    scale = float(np.min(np.abs(problem.reference(k, which))))
    X = np.random.default_rng(seed).standard_normal((problem.n, k))
    values, vectors = sla.lobpcg(op, X, M=_CountingSolve(lu, problem.n, budget), tol=TOL * scale, maxiter=10**6,
                                 largest=False)
    return values, vectors, "M = splu(A) solve; matvecs = A products + solves"


RUNNERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, str]]] = {
    "lanczos": _run_ours("lanczos", {}),
    "lanczos_full": _run_ours("lanczos", {"reorthogonalization": "full"}),
    "lanczos_b1": _run_ours("lanczos", {"block_size": 1}),
    "lobpcg": _run_ours("lobpcg", {}),
    "power_iteration": _run_ours("power_iteration", {}),
    "arpack": _run_arpack,
    "primme": _run_primme,
    "scipy_lobpcg": _run_scipy_lobpcg,
    "torch_lobpcg": _run_torch_lobpcg,
    "lanczos_si": _run_ours_si("lanczos"),
    "lobpcg_si": _run_ours_si("lobpcg"),
    "arpack_si": _run_arpack_si,
    "scipy_lobpcg_lu": _run_scipy_lobpcg_lu,
}


def _registry_name(solver: str) -> str | None:
    return {"lanczos": "lanczos", "lanczos_full": "lanczos", "lanczos_b1": "lanczos", "lobpcg": "lobpcg",
            "power_iteration": "power_iteration", "chebyshev": "chebyshev", "golub_kahan": "golub_kahan",
            "golub_kahan_1s": "golub_kahan", "lanczos_si": "lanczos", "lobpcg_si": "lobpcg"}.get(solver)


def applies(solver: str, which: str) -> bool:
    """Shift-invert rows run on the shift-invert cases ("SI..."), the others on the rest; scipy's
    LOBPCG with an LU preconditioner only on SI0 (it finds extreme eigenvalues)."""
    if which.startswith("SI"):
        return solver in SHIFT_INVERT_ROWS and (solver != "scipy_lobpcg_lu" or which == "SI0")
    return solver not in SHIFT_INVERT_ROWS


def available(solver: str) -> tuple[bool, str]:
    """Whether a row can run here, and why not."""
    registry = _registry_name(solver)
    if registry is not None:
        if registry not in SOLVERS:
            return False, f"{registry!r} is not registered in explorer.solvers.SOLVERS"
        return True, ""
    if solver == "primme":
        try:
            import primme  # noqa: F401
        except ImportError:
            return False, "primme is not installed (pip install primme; needs libopenblas-dev to build)"
    return True, ""


# ----------------------------------------------------------------------------------------
# Rectangular problems: singular values (opt-in: --svd or --problems svd_...; one small one in --quick)
# ----------------------------------------------------------------------------------------
# Keys: ``svd_dense_<geometric|smallgap|cluster>_m<m>_n<n>`` (U diag(s) V^T with Haar U, V and the
# dense spectra above as singular values: both orientations work, m < n gives a wide matrix) and
# ``svd_grad2d_N<nx>x<ny>`` (the discrete gradient of an nx x ny grid, sparse, tall; G^T G is the
# 2-D Laplacian, so the singular values are sqrt of its closed-form eigenvalues; nx != ny avoids
# the exact doubles of a square grid, which single-vector methods cannot resolve).
# Rows: ours (golub_kahan with full and one-sided re-orthogonalization) and the peers
# scipy.sparse.linalg.svds(solver="arpack") (eigsh on A^T A), svds(solver="propack") and
# torch.svd_lowrank (q = k + 10, niter 2 = torch's default, and 8; the smallest singular values
# are out of its reach). Tolerance: ours tol = 1e-6 on sqrt(||Av - s u||^2 + ||A^T u - s v||^2) / s;
# svds squares its `tol` before handing it to ARPACK / PROPACK on A^T A, and
# ||A^T A v - s^2 v|| <= 1e-6 s^2 is ||A^T u - s v|| <= 1e-6 s for u = A v / s, so svds gets
# tol = sqrt(1e-6). PROPACK (no restart for the largest values) gets maxiter = its Krylov dimension
# = min(min(m, n), 3000). torch.svd_lowrank has no tolerance: its matvecs are counted analytically,
# q (2 niter + 2) (one product with A for the sketch, two per power iteration, one for Q^T A).
# One column of a product with A or with A^T is one matvec. Accuracy is measured here for every
# row alike: ``eig_err`` = max relative error of the sorted singular values, ``resid`` = max
# sqrt(||A v - s u||^2 + ||A^T u - s v||^2) / s with the uncounted matrix.
SVD_KEYS = ("svd_dense_smallgap_m1200_n400", "svd_dense_geometric_m4000_n1000", "svd_dense_smallgap_m4000_n1000",
            "svd_dense_smallgap_m1000_n4000", "svd_grad2d_N100x99")
SVD_QUICK_KEYS = ("svd_dense_smallgap_m1200_n400",)
SVD_DENSE_CASES = ((10, "LA"),)
SVD_GRAD_CASES = ((10, "LA"), (10, "SA"))
SVD_OURS = ("golub_kahan", "golub_kahan_1s")
SVD_PEERS = ("svds_arpack", "svds_propack", "torch_svd_lowrank", "torch_svd_lowrank_8")
_SVD_ROWS = SVD_OURS + SVD_PEERS
PROPACK_MAX_KRYLOV = 3000


@dataclass
class SVDBenchProblem(BenchProblem):
    """A rectangular matrix with known singular values (``eigenvalues`` holds them, ascending)."""

    kind: str = "svd"

    @property
    def n(self) -> int:
        return int(self.operator.shape[1])

    @property
    def m(self) -> int:
        return int(self.operator.shape[0])


def _svd_dense(kind: str, m: int, n: int, cases: Sequence[tuple[int, str]], seed: int = 0) -> SVDBenchProblem:
    r = min(m, n)
    values = dense_spectrum(kind, r)  # descending
    rng = np.random.default_rng(seed)
    frames = []
    for size in (m, n):
        Q, R = np.linalg.qr(rng.standard_normal((size, r)))
        frames.append(Q * np.sign(np.diag(R)))  # Haar on the Stiefel manifold (Mezzadri 2007)
    A = (frames[0] * values) @ frames[1].T
    tensor = torch.from_numpy(A)
    return SVDBenchProblem(f"svd_dense_{kind}_m{m}_n{n}", DenseOperator(tensor, is_symmetric=False), A, tensor,
                           np.sort(values), tuple(cases), "svd_dense",
                           f"dense U diag(s) V^T, {kind} singular values, {m} x {n}")


def _svd_grad(nx: int, ny: int, cases: Sequence[tuple[int, str]]) -> SVDBenchProblem:
    from explorer import problems  # local: problems imports the solver registry

    problem = problems.gradient_2d(nx, ny)
    op = problem.operator
    assert isinstance(op, SparseOperator) and problem.singular_values is not None
    csr = op.to_scipy()
    coo = csr.tocoo()
    # (indices from a valid scipy matrix: torch's invariant check would repeat that work)
    tensor = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data, coo.shape,
                                     check_invariants=False).coalesce()
    return SVDBenchProblem(f"svd_grad2d_N{nx}x{ny}", op, csr, tensor, problem.singular_values.numpy(), tuple(cases),
                           "svd_grad2d", problem.description)


def _svd_problem(key: str, cases: Sequence[tuple[int, str]] | None) -> SVDBenchProblem:
    parts = key.split("_")
    if len(parts) == 5 and parts[1] == "dense" and parts[3].startswith("m") and parts[4].startswith("n"):
        return _svd_dense(parts[2], int(parts[3][1:]), int(parts[4][1:]), cases or SVD_DENSE_CASES)
    if len(parts) == 3 and parts[1] == "grad2d" and parts[2].startswith("N") and "x" in parts[2]:
        nx, ny = parts[2][1:].split("x")
        return _svd_grad(int(nx), int(ny), cases or SVD_GRAD_CASES)
    raise ValueError(f"unknown SVD problem key {key!r}; use svd_dense_<geometric|smallgap|cluster>_m<m>_n<n> or "
                     f"svd_grad2d_N<nx>x<ny> (e.g. {', '.join(SVD_KEYS)})")


def _svd_not_applicable(solver: str, which: str) -> str | None:
    """SVD rows that cannot run a case (a skip note), e.g. torch.svd_lowrank for the smallest values."""
    if solver.startswith("torch_svd_lowrank") and which != "LA":
        return "torch.svd_lowrank computes the largest singular values only"
    return None


def _applies(problem: BenchProblem, solver: str) -> bool:
    """SVD rows run on the rectangular problems only, the eigen rows on the others."""
    return (solver in _SVD_ROWS) == isinstance(problem, SVDBenchProblem)


class _CountingScipyRect(sla.LinearOperator):
    """scipy LinearOperator of an m x n matrix with A^T, charging a Budget for both products."""

    def __init__(self, matrix: Any, budget: Budget) -> None:
        super().__init__(dtype=np.float64, shape=matrix.shape)
        self.matrix, self.budget = matrix, budget

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        self.budget.charge(1)
        return self.matrix @ x.reshape(-1)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        self.budget.charge(X.shape[1])
        return self.matrix @ X

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        self.budget.charge(1)
        return self.matrix.T @ x.reshape(-1)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        self.budget.charge(X.shape[1])
        return self.matrix.T @ X


class _CountingRectOperator(LinearOperator):
    """Our operator contract for an m x n operator (with A^T), charging a Budget for both products."""

    def __init__(self, base: LinearOperator, budget: Budget) -> None:
        super().__init__(base.shape, base.dtype, base.device, is_symmetric=False)
        self.base, self.budget = base, budget

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        self.budget.charge(1)
        return self.base._matvec(x)

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        self.budget.charge(X.shape[1])
        return self.base._matmat(X)

    def _rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        self.budget.charge(X.shape[1])
        return self.base._rmatmat(X)

    @property
    def kind(self) -> str:
        return self.base.kind


def _run_golub_kahan(extras: dict[str, Any]) -> Callable[..., tuple[np.ndarray, Any, str]]:
    def runner(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
               tracker: Any = None) -> tuple[np.ndarray, Any, str]:
        op = _CountingRectOperator(problem.operator, budget)
        result = solve("golub_kahan", op, k, which=which, tol=TOL, seed=seed, max_iter=10**6, tracker=tracker,
                       **extras)
        note = result.status.value if result.status.value != "converged" else ""
        return (result.singular_values.double().numpy(),
                (result.U.double().numpy(), result.V.double().numpy()), (note + " " + f"{result.n_iter} it").strip())
    return runner


def _run_svds(solver: str) -> Callable[..., tuple[np.ndarray, Any, str]]:
    def runner(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
               tracker: Any = None) -> tuple[np.ndarray, Any, str]:
        op = _CountingScipyRect(problem.matrix, budget)
        m, n = problem.matrix.shape
        kwargs: dict[str, Any] = {}
        if solver == "propack":
            kwargs["maxiter"] = min(min(m, n), PROPACK_MAX_KRYLOV)
        U, s, Vh = sla.svds(op, k=k, which="LM" if which == "LA" else "SM", tol=math.sqrt(TOL), solver=solver,
                            random_state=np.random.default_rng(seed), **kwargs)
        return s, (U, Vh.T), f"tol = sqrt(1e-6) (squared inside){'; maxiter = ' + str(kwargs['maxiter']) if kwargs else ''}"
    return runner


def _run_svd_lowrank(niter: int) -> Callable[..., tuple[np.ndarray, Any, str]]:
    def runner(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
               tracker: Any = None) -> tuple[np.ndarray, Any, str]:
        if which != "LA":
            raise ValueError("torch.svd_lowrank computes the largest singular values only")
        q = min(k + 10, min(problem.matrix.shape))
        torch.manual_seed(seed)  # svd_lowrank draws from the global generator (this is the run's own process)
        U, S, V = torch.svd_lowrank(problem.tensor, q=q, niter=niter)
        budget.charge(q * (2 * niter + 2))  # (counted analytically: see the block comment)
        return S[:k].numpy(), (U[:, :k].numpy(), V[:, :k].numpy()), f"q = {q}, niter = {niter}; matvecs analytic"
    return runner


#: Opt-in rows of our other solvers (``--solvers chebyshev ...``), not run by default.
EXTRA_OURS = ("chebyshev",)
RUNNERS["chebyshev"] = _run_ours("chebyshev", {})

SVD_RUNNERS: dict[str, Callable[..., tuple[np.ndarray, Any, str]]] = {
    "golub_kahan": _run_golub_kahan({}),
    "golub_kahan_1s": _run_golub_kahan({"reorthogonalization": "one-sided"}),
    "svds_arpack": _run_svds("arpack"),
    "svds_propack": _run_svds("propack"),
    "torch_svd_lowrank": _run_svd_lowrank(2),
    "torch_svd_lowrank_8": _run_svd_lowrank(8),
}
RUNNERS.update(SVD_RUNNERS)


def _svd_errors(problem: BenchProblem, k: int, which: str, values: Any, vectors: Any) -> tuple[float, float]:
    """(max relative singular-value error, max relative residual) of an SVD row (see the block comment)."""
    values = np.asarray(values, dtype=float)
    ref = problem.reference(k, which)
    if values.size < k or not np.all(np.isfinite(values)):
        return math.inf, math.inf
    U, V = (np.asarray(x, dtype=float) for x in vectors)
    order = np.argsort(-values) if which == "LA" else np.argsort(values)
    got = values[order][:k]
    U, V = U[:, order][:, :k], V[:, order][:, :k]
    U = U / np.linalg.norm(U, axis=0)
    V = V / np.linalg.norm(V, axis=0)
    err = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))
    A = problem.matrix
    res = np.sqrt(np.linalg.norm(np.asarray(A @ V) - U * got, axis=0) ** 2
                  + np.linalg.norm(np.asarray(A.T @ U) - V * got, axis=0) ** 2) / np.maximum(np.abs(got), 1e-300)
    return err, float(np.max(res))


# ----------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------
def _errors(problem: BenchProblem, k: int, which: str, values: np.ndarray,
            vectors: np.ndarray) -> tuple[float, float]:
    if isinstance(problem, SVDBenchProblem):
        return _svd_errors(problem, k, which, values, vectors)
    values, vectors = np.asarray(values), np.asarray(vectors)
    ref = problem.reference(k, which)
    if values.size < k or not np.all(np.isfinite(values)):
        return math.inf, math.inf
    if which in problem.sigmas:
        order = np.argsort(np.abs(values - problem.sigmas[which]), kind="stable")
    else:
        order = np.argsort(-values) if which == "LA" else np.argsort(values)
    got = values[order][:k]
    eig_err = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))
    V = vectors[:, order][:, :k]
    AV = np.asarray(problem.matrix @ V)
    res = np.linalg.norm(AV - V * got, axis=0) / (np.abs(got) * np.linalg.norm(V, axis=0))
    return eig_err, float(np.max(res))


def _timed(runner: Callable[..., Any], problem: BenchProblem, k: int, which: str, cap_s: float, seed: int,
           tracker: Any = None) -> tuple[Any, Budget, float, float, str | None]:
    budget = Budget(cap_s)
    failure: str | None = None
    out = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            out = runner(problem, k, which, budget, seed, tracker=tracker)
        except CapReached as cap:
            failure = str(cap)
        except Exception as err:  # a peer failing is a result, not a crash of the benchmark
            # PRIMME turns our CapReached inside its matvec into "PRIMME error -41"
            if budget.capped:
                failure = f"CAP({budget.count})"
            elif _is_out_of_memory(err):
                failure = f"MEM: {type(err).__name__}: {str(err)[:120]}"
            else:
                failure = f"FAIL: {type(err).__name__}: {str(err)[:120]}"
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if out is not None:
        # peers' own warnings (scipy lobpcg: "not reaching the requested tolerance") go to the note
        relevant = [str(w.message).splitlines()[0][:80] for w in caught if "sparse" not in str(w.message).lower()]
        if relevant:
            values, vectors, note = out
            out = (values, vectors, (note + "; warned: " + relevant[0]).strip("; "))
    return out, budget, wall, cpu, failure


class _RecordTimer:
    """Times ``Monitor.record`` (wraps the class method for the duration of a run)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original: Any = None

    def __enter__(self) -> "_RecordTimer":
        self._original = solver_common.Monitor.record
        original = self._original
        timer = self

        def record(monitor: Any, *args: Any, **kwargs: Any) -> bool:
            t = time.process_time()
            try:
                return bool(original(monitor, *args, **kwargs))
            finally:
                timer.seconds += time.process_time() - t

        solver_common.Monitor.record = record  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        solver_common.Monitor.record = self._original  # type: ignore[method-assign]


def _tracker_overhead(runner: Callable[..., Any], problem: BenchProblem, k: int, which: str, cap_s: float,
                      seed: int) -> tuple[float, float]:
    """(% CPU added by a HistoryTracker, % of the solve spent building records)."""
    plain, tracked = [], []
    with _RecordTimer() as timer:
        for _ in range(3):  # alternate, keep the fastest of each: the host is shared
            _out, _b, _w, cpu, fail = _timed(runner, problem, k, which, cap_s, seed)
            if fail:
                return math.nan, math.nan
            plain.append(cpu)
            _out, _b, _w, cpu, fail = _timed(runner, problem, k, which, cap_s, seed, tracker=HistoryTracker())
            if fail:
                return math.nan, math.nan
            tracked.append(cpu)
        record_share = 100.0 * timer.seconds / max(sum(plain) + sum(tracked), 1e-12)
    return 100.0 * (min(tracked) - min(plain)) / max(min(plain), 1e-12), record_share


@dataclass
class _SkipBook:
    """Solvers that hit a cap (CPU, wall or memory) on a case are skipped on larger instances of that case.

    ``family`` is the problem key without its size (``laplace2d``, ``dense_smallgap``): a cap on
    ``dense_smallgap_n1000`` skips ``dense_smallgap_n4000``, not ``dense_cluster_n1000``.
    """

    capped: dict[tuple[str, str, int, str], tuple[int, str]] = field(default_factory=dict)

    def reason(self, family: str, solver: str, k: int, which: str, n: int) -> str | None:
        smaller = self.capped.get((family, solver, k, which))
        if smaller is not None and smaller[0] < n:
            return f"skip: hit the {smaller[1]} at n = {smaller[0]:,}"
        return None

    def mark(self, family: str, solver: str, k: int, which: str, n: int, what: str = "cap") -> None:
        key = (family, solver, k, which)
        if key not in self.capped or n < self.capped[key][0]:
            self.capped[key] = (n, what)


# ----------------------------------------------------------------------------------------
# Isolation: one forked child process per run, under a memory limit and a wall-clock limit
# ----------------------------------------------------------------------------------------
_OOM_TEXT = ("can't allocate memory", "cannot allocate memory", "out of memory", "bad_alloc", "not enough memory",
             "unable to allocate")


def _is_out_of_memory(err: BaseException) -> bool:
    """A failed allocation: Python/numpy ``MemoryError`` or torch's "DefaultCPUAllocator: can't allocate memory"."""
    return isinstance(err, MemoryError) or any(text in str(err).lower() for text in _OOM_TEXT)


def physical_memory_gb() -> float:
    """Physical memory of this machine in GB (2^30 bytes); NaN where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return math.nan


def default_mem_gb() -> float:
    """Memory cap per run: 4 GB, or a quarter of the physical memory if that is less."""
    phys = physical_memory_gb()
    return 4.0 if not math.isfinite(phys) else round(min(4.0, phys / 4.0), 1)


def _proc_self_bytes(field_name: str) -> int:
    """``VmSize`` / ``VmRSS`` / ``VmHWM`` of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def can_isolate() -> bool:
    """Whether runs can go to forked children with a memory limit (POSIX with ``fork`` and ``resource``)."""
    try:
        import resource  # noqa: F401
    except ImportError:
        return False
    return hasattr(os, "fork") and hasattr(os, "wait4")


_RSS_HEADER = struct.Struct("<q")


@dataclass
class _ChildOutcome:
    result: Any  # what fn returned (unpickled), None when the child gave nothing back
    error: tuple[str, str, bool] | None  # (type, message, out of memory) of an exception fn raised
    timed_out: bool
    exit_status: int  # os.wait4 status
    peak_rss: int  # bytes, the child's ru_maxrss (includes the pages it shares with the parent)
    start_rss: int  # bytes, the child's RSS after the fork and the limit, before the run
    start_vm: int  # bytes, the address space at the fork (the memory limit is on top of it)


def _run_in_child(fn: Callable[[], Any], mem_bytes: int | None, timeout_s: float | None) -> _ChildOutcome:
    """Run ``fn()`` in a forked child with ``RLIMIT_AS`` = (address space at the fork) + ``mem_bytes``.

    The child inherits the built problem (copy-on-write, nothing is pickled or rebuilt), sets
    one torch thread and the limit, runs ``fn``, and pickles its return value back through a
    pipe. ``timeout_s`` is a wall-clock backstop: past it the child is killed (SIGKILL, by pid).
    """
    import resource

    sys.stdout.flush()
    sys.stderr.flush()
    start_rss, start_vm = _proc_self_bytes("VmRSS"), _proc_self_bytes("VmSize")  # fallbacks: the parent's
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # -------- child: never returns
        code = 0
        try:
            os.close(read_fd)
            torch.set_num_threads(1)  # also set in the parent; the BLAS variables are inherited
            if mem_bytes:
                _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
                limit = _proc_self_bytes("VmSize") + int(mem_bytes)
                if hard != resource.RLIM_INFINITY:
                    limit = min(limit, hard)
                resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            # the child's own RSS at the start (shared library pages are faulted in lazily after
            # a fork, so it is below the parent's): sent first, so it arrives even if the run dies
            os.write(write_fd, _RSS_HEADER.pack(_proc_self_bytes("VmRSS")))
            error = None
            result = None
            try:
                result = fn()
            except BaseException as err:  # noqa: BLE001 - reported to the parent
                error = (type(err).__name__, str(err)[:300], _is_out_of_memory(err))
            # (the traceback and the run's large locals are gone once the except block ended)
            payload = pickle.dumps((result, error))
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        except BaseException:  # noqa: BLE001 - nothing must escape the child
            code = 1
        finally:
            os._exit(code)
    # -------- parent
    os.close(write_fd)
    chunks: list[bytes] = []
    timed_out = False
    finished = False
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                timed_out = True
                break
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        finished = not timed_out
    finally:
        os.close(read_fd)
        if not finished:  # timed out, or the parent was interrupted: end our own child
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _pid, status, usage = os.wait4(pid, 0)
    result, error = None, None
    data = b"".join(chunks)
    if len(data) >= _RSS_HEADER.size:
        start_rss = _RSS_HEADER.unpack(data[:_RSS_HEADER.size])[0] or start_rss
        if not timed_out and len(data) > _RSS_HEADER.size:
            try:
                result, error = pickle.loads(data[_RSS_HEADER.size:])
            except Exception:  # noqa: BLE001 - a child killed mid-write
                result, error = None, None
    peak = int(usage.ru_maxrss) * (1 if sys.platform == "darwin" else 1024)
    return _ChildOutcome(result, error, timed_out, status, peak, start_rss, start_vm)


def _gb(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GB"


def _run_case(problem: BenchProblem, solver: str, k: int, which: str, cap_s: float, seed: int,
              overhead_max_s: float, repeat_below_s: float = REPEAT_BELOW_S) -> dict[str, Any]:
    """One (solver, problem, case) run: the row's measured fields (runs in the child when isolated)."""
    runner = RUNNERS[solver]
    out, budget, wall, cpu, failure = _timed(runner, problem, k, which, cap_s, seed)
    update: dict[str, Any] = {"matvecs": budget.count, "wall_s": wall, "cpu_s": cpu, "runs": 1}
    if failure is not None:
        status = "CAP" if failure.startswith("CAP") else "MEM" if failure.startswith("MEM") else "FAIL"
        update.update(status=status, note=failure)
        return update
    spent = cpu
    while cpu < repeat_below_s and update["runs"] < REPEAT_MAX and spent < 2.0 * repeat_below_s:
        out_i, budget_i, wall_i, cpu_i, failure_i = _timed(runner, problem, k, which, cap_s, seed)
        if failure_i is not None:
            break
        update["runs"] += 1
        spent += cpu_i
        if cpu_i < cpu:  # the fastest run is the row: its time, its matvecs, its answer
            out, wall, cpu = out_i, wall_i, cpu_i
            update["matvecs"] = budget_i.count
        del out_i
    update.update(wall_s=wall, cpu_s=cpu)
    values, vectors, note = out
    del out
    eig_err, resid = _errors(problem, k, which, values, vectors)
    del values, vectors
    update.update(status="done", eig_err=eig_err, resid=resid, note=note, ok=bool(eig_err <= CORRECT_ERR))
    if solver == "lanczos" and cpu <= overhead_max_s:
        update["tracker_%"], update["record_%"] = _tracker_overhead(runner, problem, k, which, cap_s, seed)
    return update


def _isolated_case(problem: BenchProblem, solver: str, k: int, which: str, cap_s: float, seed: int,
                   overhead_max_s: float, mem_gb: float | None, timeout_s: float,
                   repeat_below_s: float = REPEAT_BELOW_S) -> dict[str, Any]:
    """:func:`_run_case` in a child process; a child that ran out of memory or time becomes a row, too."""
    mem_bytes = int(mem_gb * 2**30) if mem_gb else None
    outcome = _run_in_child(lambda: _run_case(problem, solver, k, which, cap_s, seed, overhead_max_s,
                                              repeat_below_s),
                            mem_bytes, timeout_s)
    grown = max(outcome.peak_rss - outcome.start_rss, 0)
    mem_text = f"MEM(cap {mem_gb:g} GB, peak RSS +{_gb(grown)})"
    update: dict[str, Any]
    if outcome.timed_out:
        update = {"status": "CAP", "note": f"CAP(wall {timeout_s:g} s): killed"}
    elif outcome.result is not None:
        update = dict(outcome.result)
        if update.get("status") == "MEM":
            update["note"] = f"{mem_text}: {update['note'][5:]}"
    elif outcome.error is not None:  # the benchmark's own code failed in the child (e.g. _errors)
        name, message, oom = outcome.error
        update = {"status": "MEM" if oom else "FAIL",
                  "note": (f"{mem_text}: " if oom else "FAIL: ") + f"{name}: {message[:120]}"}
    else:  # died without a word: a signal (SIGABRT from std::bad_alloc, SIGSEGV, the kernel's OOM killer)
        status = outcome.exit_status
        how = (f"signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exit code {os.WEXITSTATUS(status)}")
        near_cap = mem_bytes is not None and grown >= 0.8 * mem_bytes
        update = {"status": "MEM" if near_cap else "FAIL",
                  "note": (f"{mem_text}: " if near_cap else "FAIL: ") + f"the run's process died ({how})"}
    update["peak_rss"] = outcome.peak_rss
    update["peak_rss_growth"] = grown
    return update


def run_benchmark(problems: Sequence[BenchProblem], solvers: Sequence[str] = OURS + PEERS + SVD_OURS + SVD_PEERS
                  + SHIFT_INVERT_ROWS, *,
                  cap_s: float = 30.0,
                  seed: int = 0, overhead_max_s: float = 2.0, log: Callable[[str], None] | None = None,
                  repeat_below_s: float = REPEAT_BELOW_S,
                  mem_gb: float | None = None, timeout_s: float | None = None, isolate: bool | None = None,
                  skips: _SkipBook | None = None) -> pd.DataFrame:
    """Run every solver on every (problem, k, which) case; one row each (see the module docstring).

    Each run goes to its own forked child process (``isolate``; default: where the OS allows
    it) with ``mem_gb`` GB of address space on top of what it started with (default
    :func:`default_mem_gb`; 0 = no limit) and ``timeout_s`` seconds of wall clock (default
    ``3 cap_s + 6 overhead_max_s + 3 repeat_below_s + 60``; ``repeat_below_s``: runs faster
    than that are repeated, the fastest counts). ``isolate=False`` runs everything in this process,
    without either limit. ``log`` gets each row as a line as soon as it is finished.
    ``skips`` carries the skip rule across calls (one call per problem in :func:`main`).
    """
    isolate = can_isolate() if isolate is None else isolate
    if isolate and not can_isolate():
        raise RuntimeError("isolated runs need os.fork and the resource module (POSIX); use isolate=False")
    mem_gb = default_mem_gb() if mem_gb is None else mem_gb
    timeout_s = (3.0 * cap_s + 6.0 * overhead_max_s + 3.0 * repeat_below_s + 60.0 if timeout_s is None
                 else timeout_s)
    rows: list[dict[str, Any]] = []
    skips = _SkipBook() if skips is None else skips
    for problem in problems:
        for k, which in problem.cases:
            case_rows = []
            for solver in solvers:
                if not (_applies(problem, solver) and applies(solver, which)):  # SVD rows on rectangular problems only; SI rows on SI cases only
                    continue
                row: dict[str, Any] = {"problem": problem.key, "n": problem.n, "k": k, "which": which,
                                       "solver": solver, "matvecs": math.nan, "wall_s": math.nan, "cpu_s": math.nan,
                                       "runs": 0,
                                       "eig_err": math.nan, "resid": math.nan, "tracker_%": math.nan,
                                       "record_%": math.nan, "ok": False, "note": ""}
                ok, why = available(solver)
                skip = None if ok else why
                family = problem.key.rsplit("_", 1)[0]  # the key without its size
                skip = (skip or skips.reason(family, solver, k, which, problem.n) or _same_as_default(solver, k)
                        or _svd_not_applicable(solver, which))
                if skip:
                    row.update(status="skip", note=skip)
                elif isolate:
                    row.update(_isolated_case(problem, solver, k, which, cap_s, seed, overhead_max_s, mem_gb,
                                              timeout_s, repeat_below_s))
                else:
                    row.update(_run_case(problem, solver, k, which, cap_s, seed, overhead_max_s, repeat_below_s))
                if row["status"] in ("CAP", "MEM"):
                    what = "memory cap" if row["status"] == "MEM" else \
                        ("wall-clock cap" if row["note"].startswith("CAP(wall") else "cap")
                    skips.mark(family, solver, k, which, problem.n, what)
                case_rows.append(row)
                if log is not None:
                    log(_format_row(row))
            arpack = "arpack_si" if which.startswith("SI") else "arpack"
            ref = next((r for r in case_rows if r["solver"] in (arpack, "svds_arpack") and r["status"] == "done"),
                       None)
            for r in case_rows:
                r["mv/arpack"] = r["matvecs"] / ref["matvecs"] if ref and r["status"] == "done" else math.nan
                r["wall/arpack"] = r["wall_s"] / ref["wall_s"] if ref and r["status"] == "done" else math.nan
            rows.extend(case_rows)
    return pd.DataFrame(rows, columns=COLUMNS)


def _same_as_default(solver: str, k: int) -> str | None:
    """Rows that would repeat another row's run exactly (not run, with this note)."""
    if solver == "lanczos_b1" and default_block_size(k) == 1:
        return f"same run as lanczos (its default block size is 1 for k = {k})"
    return None


def _format_row(row: dict[str, Any]) -> str:
    peak = f" peak={row['peak_rss'] / 2**30:.2f}GB(+{row['peak_rss_growth'] / 2**30:.2f})" if "peak_rss" in row else ""
    return (f"{row['problem']:<22} k={row['k']:<2} {row['which']} {row['solver']:<16} {row['status']:<5} "
            f"mv={row['matvecs']!s:>6} wall={row['wall_s']:.2f}s cpu={row['cpu_s']:.2f}s "
            f"err={row['eig_err']:.1e} res={row['resid']:.1e}{peak} {row['note']}")


def format_table(frame: pd.DataFrame) -> str:
    """The table as fixed-width text (ratios to 2 digits, errors in e-notation)."""
    def fmt(column: str, value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            if column in ("eig_err", "resid"):
                return f"{value:.1e}"
            if column in ("tracker_%", "record_%"):
                return f"{value:+.1f}" if column == "tracker_%" else f"{value:.1f}"
            return f"{value:.2f}"
        return str(value)
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = [fmt(column, v) for v in shown[column]]
    return shown.to_string(index=False)


def _ensure_single_thread() -> None:
    """Re-exec once with the BLAS thread variables set (OpenBLAS reads them only at load)."""
    wanted = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if os.environ.get("EXPLORER_BENCH_REEXEC") != "1" and any(os.environ.get(k) != v for k, v in wanted.items()):
        env = dict(os.environ, **wanted, EXPLORER_BENCH_REEXEC="1")
        os.execve(sys.executable, [sys.executable, "-m", "explorer.bench", *sys.argv[1:]], env)
    torch.set_num_threads(1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with the defaults resolved: ``keys``, ``cap``, ``mem_gb``, ``timeout``, ``solvers``."""
    parser = argparse.ArgumentParser(prog="python -m explorer.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 10^4 Laplacian and n = 1000 dense only, 5 s cap")
    parser.add_argument("--problems", nargs="+", help=f"problem keys (default: all of {', '.join(PROBLEM_KEYS)})")
    parser.add_argument("--solvers", nargs="+", choices=OURS + PEERS + SVD_OURS + SVD_PEERS + SHIFT_INVERT_ROWS
                        + EXTRA_OURS,
                        help=f"rows to run (default: all but the opt-in {', '.join(EXTRA_OURS)}; the shift-invert "
                             "rows run only on laplace2d_si_N<N>)")
    parser.add_argument("--svd", action="store_true",
                        help=f"also run the rectangular SVD problems ({', '.join(SVD_KEYS)}): golub_kahan against "
                             "scipy svds (arpack, propack) and torch.svd_lowrank; --quick runs the small one anyway")
    parser.add_argument("--cap", type=float, default=None, help="CPU seconds per run (default 30, quick 5)")
    parser.add_argument("--mem-gb", type=float, default=None,
                        help=f"memory cap per run in GB of address space on top of what the run starts with "
                             f"(default {default_mem_gb():g} here: 4 GB or a quarter of physical memory; 0 = none)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="wall-clock seconds per run before its process is killed (default 3 cap + 6 x the "
                             "tracker-overhead limit + 3 x --repeat-below + 60)")
    parser.add_argument("--repeat-below", type=float, default=REPEAT_BELOW_S,
                        help=f"repeat runs faster than this many CPU seconds (up to {REPEAT_MAX} runs, no new one "
                             f"after twice as long) and keep the fastest (default {REPEAT_BELOW_S:g}; 0 = run once)")
    parser.add_argument("--no-isolate", action="store_true",
                        help="run everything in this process (no memory cap, no wall-clock limit)")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    if args.mem_gb is not None and args.mem_gb < 0:
        parser.error("--mem-gb must be >= 0 (0 = no memory cap)")
    args.keys = tuple(args.problems or ((QUICK_KEYS + SVD_QUICK_KEYS) if args.quick else PROBLEM_KEYS))
    if args.svd and not args.problems:
        args.keys += tuple(key for key in SVD_KEYS if key not in args.keys)
    args.cap = args.cap if args.cap is not None else (5.0 if args.quick else 30.0)
    args.mem_gb = default_mem_gb() if args.mem_gb is None else args.mem_gb
    args.overhead_max_s = 1.0 if args.quick else 2.0
    args.timeout = (args.timeout if args.timeout is not None
                    else 3.0 * args.cap + 6.0 * args.overhead_max_s + 3.0 * args.repeat_below + 60.0)
    args.solvers = tuple(args.solvers or OURS + PEERS + SVD_OURS + SVD_PEERS + SHIFT_INVERT_ROWS)
    args.isolate = not args.no_isolate and can_isolate()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if argv is None:
        _ensure_single_thread()
    torch.set_num_threads(1)
    keys, cap, solvers = args.keys, args.cap, args.solvers
    limits = (f"one child process per run, memory cap {args.mem_gb:g} GB" if args.mem_gb else
              "one child process per run, no memory cap") + f", wall limit {args.timeout:g} s" \
        if args.isolate else "all runs in this process (no memory cap, no wall limit)"
    print(f"# explorer.bench: {len(keys)} problem(s), cap {cap:g} s CPU per run, tol {TOL:g}, float64, "
          f"torch threads {torch.get_num_threads()}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; "
          f"{limits}", flush=True)
    for solver in solvers:
        ok, why = available(solver)
        if not ok:
            print(f"# note: {solver} skipped: {why}", flush=True)
    frames = []
    skips = _SkipBook()  # shared, so a cap at n = 10^4 skips the case at n = 10^5
    for key in keys:
        t = time.perf_counter()
        problem = make_problems([key])[0]
        m, n = problem.operator.shape
        size = f"n = {n:,}" if m == n else f"{m:,} x {n:,}"
        print(f"# built {key} ({size}) in {time.perf_counter() - t:.1f} s", flush=True)
        frames.append(run_benchmark([problem], solvers, cap_s=cap, overhead_max_s=args.overhead_max_s,
                                    repeat_below_s=args.repeat_below,
                                    log=lambda line: print("  " + line, flush=True), mem_gb=args.mem_gb,
                                    timeout_s=args.timeout, isolate=args.isolate, skips=skips))
        del problem
    frame = pd.concat(frames, ignore_index=True)
    print()
    print(format_table(frame))
    lz = frame[(frame["solver"] == "lanczos") & frame["tracker_%"].notna()]
    if len(lz):
        print(f"\n# tracker overhead (HistoryTracker vs none, lanczos, {len(lz)} solves): median "
              f"{lz['tracker_%'].median():+.1f} %, max {lz['tracker_%'].max():+.1f} %; building the records "
              f"(Monitor.record, paid with or without a tracker): median {lz['record_%'].median():.1f} % of the solve")
    if args.csv:
        frame.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
