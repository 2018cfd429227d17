"""Benchmark: our registered solvers against ARPACK, PRIMME, scipy and torch LOBPCG, each run in its own process.

Run ``python -m explorer.bench`` (the full set: 2-D Laplacians n = 10^4 and 10^5, dense
prescribed spectra n = 1000 and 4000; long, over an hour on a loaded 2-core host) or
``python -m explorer.bench --quick`` (n = 10^4 Laplacian and n = 1000 dense; one to two
minutes on a 2-core host). ``--problems`` picks problem keys (e.g.
``--problems laplace2d_N316`` runs the n = 10^5 Laplacian alone; ``laplace2d_N1000``, n = 10^6,
is opt-in: named only, never in the default set or ``--quick``), ``--cases 10:LA 1:SA`` replaces
every problem's (k, which) cases, ``--solvers`` picks rows, ``--csv`` writes the table,
``--mem-gb`` / ``--timeout`` set the per-run limits below, ``--device cpu|cuda[:i]`` and
``--dtype float64|float32`` say where and in what precision the solvers run, ``--tol`` sets
the tolerance (default 1e-6 in float64, 1e-5 in float32). The n = 10^6 row of
docs/benchmarks.md: ``--problems laplace2d_N1000 --cases 10:LA --solvers lanczos --cap 600``.
Each row is printed (flushed) as soon as its run ends; the full table follows at the end.

What is measured (the method of ../shared/PEERS.md, section 3):

* **Problems.** ``laplace2d_N{100,316}``: the 5-point Dirichlet Laplacian (n = N^2), k = 1
  and 10, LA and SA; reference analytic (``4 - 2 cos(i pi/(N+1)) - 2 cos(j pi/(N+1))``, with
  exact double eigenvalues). ``dense_{geometric,smallgap,cluster}_n{1000,4000}``: ``Q diag(lam)
  Q^T`` with a Haar-random Q, k = 10 LA; reference = the prescribed lam (the assembled
  matrix is within ~n eps ||A|| of it). Float64 and tol = 1e-6 (relative residual) unless
  ``--dtype float32`` (then tol 1e-5, above float32's rounding level). Any ``laplace2d_N<N>``
  is accepted (``laplace2d_N3163``, n = 10^7, for a GPU).
* **Devices.** ``--device cuda``: our operator (torch sparse CSR or dense) and torch.lobpcg's
  tensor live on the GPU; the scipy peers (ARPACK, PRIMME, scipy lobpcg) stay on the CPU in
  the same dtype and say so in ``note``. On CUDA every time is wall seconds between
  ``torch.cuda.synchronize`` calls (the host's CPU time says nothing about GPU work), the cap
  is wall seconds, and runs go in this process (below).
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
  ``--quick``; wall seconds for the rows on a GPU), enforced inside the counting operator by
  raising; such rows read ``CAP``. A
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
  pages it shares with the parent, and the growth over the start); the table shows both in GB
  (``peak_gb``, ``grow_gb``). ``--no-isolate`` (or ``run_benchmark(..., isolate=False)``) runs
  everything in one process, without limits and without the peak columns. On CUDA runs are
  never isolated: a process forked after CUDA is initialized cannot use it, and ``RLIMIT_AS``
  breaks CUDA's reservation of address space; the peak columns are then
  ``torch.cuda.max_memory_allocated`` during the run (the resident problem included) and its
  growth over the start.
* **Accuracy.** ``eig_err``: max relative error of the returned set, sorted in ``which``
  order, against the reference (a missed copy of a double eigenvalue shows as ~1e-3 to
  1e-4). ``resid``: max ``||A v - lambda v|| / (|lambda| ||v||)``, computed here with the
  uncounted float64 matrix on the CPU (whatever the run's device and dtype). ``ok``: all k
  values returned and ``eig_err`` below :meth:`BenchProblem.ok_threshold`, ``min(1e-5, g / 2)``
  with g the smallest relative gap between distinct wanted values: then no copy of a multiple
  eigenvalue is missing (at n = 10^6, g = 1.2e-6; the threshold is printed per case).
* **Overhead** against the physical floor (PEERS.md section 3): ``overhead = time / (matvecs x
  t_mv)`` for every row that ran, with ``t_mv`` (``t_mv_ms``) the time of one single-vector
  product on the row's backend (:func:`backend`, :func:`measure_t_mv`: ``matrix @ x`` for the
  scipy peers, our operator's ``matvec`` for ours, ``tensor @ x`` for torch.lobpcg), measured in
  the parent before and after each problem's runs, the smaller kept; CPU time on the CPU, wall
  time on a GPU. Block methods can come out below 1 (a block product costs less per column).
* **Ratios** ``mv/arpack`` and ``wall/arpack``: this row divided by ARPACK's row on the same
  problem (below 1: better than ARPACK).
* **Tracker overhead** (``tracker_%``, lanczos rows): CPU time of the solve with a
  ``HistoryTracker`` recording every iteration against the same solve without a tracker
  (fastest of 3 alternating runs each, on problems whose solve takes under ``overhead_max_s``). The
  per-iteration record itself is built in both runs (``Monitor.record`` is unconditional), so
  the column is what a tracker adds; ``record_%`` is the measured cost of building the
  records (``Monitor.record``) as a share of the solve.
* **Threads.** One thread everywhere (``--threads``, default 1): ``torch.set_num_threads`` (in
  the parent and again in each child), and when run as a module the process re-executes itself
  once with ``OMP/OPENBLAS/MKL_NUM_THREADS`` set (OpenBLAS reads them only at load time; the
  forked children inherit the loaded libraries and the environment). Wall and CPU time are both
  reported; the host is shared. With ``--threads 2`` (the n = 10^6 frontier "on these 2 cores")
  read the wall column: CPU time, the cap and the overhead then count both threads.
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
from dataclasses import dataclass, field, replace
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

__all__ = ["BenchProblem", "PROBLEM_KEYS", "QUICK_KEYS", "OPT_IN_KEYS", "PEERS", "make_problems", "run_benchmark",
           "measure_t_mv", "parse_cases", "main", "SVDBenchProblem", "SVD_KEYS", "SVD_QUICK_KEYS", "SVD_OURS",
           "SVD_PEERS"]

TOL = 1e-6  # float64 (default_tol)
TOL_FLOAT32 = 1e-5
CORRECT_ERR = 1e-5
LAPLACE_CASES = ((1, "LA"), (1, "SA"), (10, "LA"), (10, "SA"))
DENSE_CASES = ((10, "LA"),)
PROBLEM_KEYS = ("laplace2d_N100", "laplace2d_N316", "dense_geometric_n1000", "dense_smallgap_n1000",
                "dense_cluster_n1000", "dense_geometric_n4000", "dense_smallgap_n4000", "dense_cluster_n4000")
QUICK_KEYS = ("laplace2d_N100", "dense_geometric_n1000", "dense_smallgap_n1000", "dense_cluster_n1000")
# Opt-in (named with --problems only): n = 10^6, where no peer measured here returns the top 10
# (../shared/PEERS.md); one run of a case takes minutes on one CPU thread.
OPT_IN_KEYS = ("laplace2d_N1000",)
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
           "resid", "overhead", "mv/arpack", "wall/arpack", "peak_gb", "grow_gb", "t_mv_ms", "tracker_%", "record_%",
           "note"]
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
        operator: explorer operator (SparseOperator / DenseOperator) on ``device`` in ``dtype``.
        matrix: the same matrix for the scipy peers (scipy CSR or numpy array, on the CPU, in
            ``dtype``; shares memory with ``operator`` on the CPU in float64).
        tensor: the same matrix as a torch tensor (sparse CSR or dense) on ``device`` for
            torch.lobpcg (the operator's own tensor: no second copy).
        eigenvalues: all n exact eigenvalues, ascending (numpy float64).
        cases: (k, which) pairs.
        family: "laplace2d" or "dense" (the skip rule compares problems of the same key without
            its size, e.g. dense_smallgap_n1000 and dense_smallgap_n4000).
        exact: the matrix in float64 on the CPU, for the accuracy columns (``matrix`` as built).
        device, dtype, tol: where and how the runs go (:meth:`placed`).
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
    exact: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float64
    tol: float = TOL

    def __post_init__(self) -> None:
        if self.exact is None:
            self.exact = self.matrix

    @property
    def n(self) -> int:
        return int(self.operator.shape[0])

    def reference(self, k: int, which: str) -> np.ndarray:
        ev = self.eigenvalues
        if which in self.sigmas:  # the k nearest sigma, nearest first
            return ev[np.argsort(np.abs(ev - self.sigmas[which]), kind="stable")][:k].copy()
        return ev[::-1][:k].copy() if which == "LA" else ev[:k].copy()

    def ok_threshold(self, k: int, which: str) -> float:
        """The largest ``eig_err`` that still proves the right set: ``min(CORRECT_ERR, g / 2)``.

        ``g`` is the smallest relative gap between distinct exact values at the wanted end
        (the k wanted values and the next distinct one; values within 1e-12 relative are one
        value, so exact doubles count once). A sorted returned set whose every value lies
        within g / 2 of its reference is nearer to it than to any other distinct eigenvalue,
        so no copy is missing. On the 2-D Laplacian distinct top values are pi^2 / (N + 1)^2
        apart (1.2e-4 relative at n = 10^4, 1.2e-5 at 10^5, 1.2e-6 at 10^6): a set that skips a
        copy of a double is off by that much, inside the fixed 1e-5 from n = 10^5 on.
        """
        ev = np.asarray(self.eigenvalues, dtype=np.float64)
        if which in self.sigmas:  # nearest sigma first
            ev = ev[np.argsort(np.abs(ev - self.sigmas[which]), kind="stable")]
        elif which == "LA":
            ev = ev[::-1]
        if ev.size == 0:
            return CORRECT_ERR
        scale = max(float(np.abs(ev).max()), np.finfo(np.float64).tiny)
        stop = min(k, ev.size)
        last = ev[stop - 1]
        while stop < ev.size and abs(ev[stop] - last) <= 1e-12 * scale:
            stop += 1
        window = np.sort(ev[:min(stop + 1, ev.size)])  # by value: every pair of neighbours counts
        distinct = [window[0]]
        for value in window[1:]:
            if abs(value - distinct[-1]) > 1e-12 * scale:
                distinct.append(value)
        if len(distinct) < 2:
            return CORRECT_ERR
        values = np.asarray(distinct)
        gaps = np.abs(np.diff(values)) / np.maximum(np.minimum(np.abs(values[:-1]), np.abs(values[1:])), 1e-300)
        return float(min(CORRECT_ERR, 0.5 * gaps.min()))

    def placed(self, device: torch.device | str, dtype: torch.dtype, tol: float | None = None) -> "BenchProblem":
        """This problem for runs on ``device`` in ``dtype`` (self when nothing changes).

        Our operator and torch.lobpcg's tensor move to the device (torch sparse CSR on CUDA);
        the scipy peers' matrix stays on the CPU, cast to ``dtype``; ``exact`` stays float64.
        """
        from explorer.operators.base import canonical_device

        device = canonical_device(device)
        tol = default_tol(dtype) if tol is None else float(tol)
        if device == self.device and dtype == self.dtype and tol == self.tol:
            return self
        op = self.operator.to(device, dtype)
        shared = self.tensor is getattr(self.operator, "matrix", None)  # torch.lobpcg's tensor is the operator's
        tensor = op.matrix if shared else self.tensor.to(device=device, dtype=dtype)  # type: ignore[attr-defined]
        matrix = self.exact if dtype == torch.float64 else self.exact.astype(np.float32)
        return replace(self, operator=op, tensor=tensor, matrix=matrix, device=device, dtype=dtype, tol=tol)


def default_tol(dtype: torch.dtype) -> float:
    """1e-6 in float64; 1e-5 in float32, above float32's rounding level at the wanted end
    (``ROUNDING_LEVEL`` eps ||A|| / |lambda| = 100 x 6e-8 = 6e-6 at the Laplacian's top)."""
    return TOL if dtype == torch.float64 else TOL_FLOAT32


def _laplacian(N: int, cases: Sequence[tuple[int, str]]) -> BenchProblem:
    from explorer import problems  # local: problems imports the solver registry

    problem = problems.laplacian_2d(N, max_n=max(N * N, 1))  # the bench knows its sizes (N3163: n = 10^7)
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
    """Counts matvec columns and raises :class:`CapReached` past ``cap_s`` seconds of ``clock``.

    The clock is read at most every ``CHECK_EVERY_S`` wall seconds: on the shared VM one
    ``time.process_time()`` call took from 0.6 us to 10 ms (it sums the CPU time of all the
    process' threads), which charged every solver's matvecs with the clock's cost. The cap is
    therefore enforced at the first charge and then to within that interval.

    ``clock``: process CPU time (the default; runs on the CPU) or wall time (runs on a GPU,
    where the host's CPU time says nothing about the work).
    """

    CHECK_EVERY_S = 0.05

    def __init__(self, cap_s: float, clock: Callable[[], float] = time.process_time) -> None:
        self.cap_s = cap_s
        self.clock = clock
        self.count = 0
        self.calls = 0
        self.capped = False
        self.t0 = clock()
        self._next_check = -math.inf  # the first charge checks

    def charge(self, columns: int) -> None:
        self.count += int(columns)
        self.calls += 1
        now = time.perf_counter()
        if now < self._next_check:
            return
        self._next_check = now + self.CHECK_EVERY_S
        if self.clock() - self.t0 > self.cap_s:
            self.capped = True
            raise CapReached(f"CAP({self.count})")


class _CountingScipy(sla.LinearOperator):
    def __init__(self, matrix: Any, budget: Budget) -> None:
        super().__init__(dtype=matrix.dtype, shape=matrix.shape)
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

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:
        self.budget.charge(Xt.shape[0])
        self.base._matvecs_into(Xt, out)

    def affine_rows_kernel(self, scale: float, shift: float) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
        counted = super().affine_rows_kernel(scale, shift)  # counts here, as CountedOperator does
        if counted is None:
            return None

        def charged(Xt: torch.Tensor, out: torch.Tensor) -> None:
            self.budget.charge(Xt.shape[0])
            counted(Xt, out)

        return charged


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
        result = solve(name, op, k, which=which, tol=problem.tol, seed=seed, max_iter=10**6, tracker=tracker,
                       **extras)
        note = result.status.value if result.status.value != "converged" else ""
        return (result.eigenvalues.detach().double().cpu().numpy(), result.eigenvectors.detach().double().cpu().numpy(),
                (note + " " + f"{result.n_iter} it").strip())
    return runner


def _run_arpack(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    op = _CountingScipy(problem.matrix, budget)
    values, vectors = sla.eigsh(op, k=k, which=which, tol=problem.tol,
                                v0=_start(problem.n, 1, seed).astype(problem.matrix.dtype))
    return values, vectors, ""


def _run_primme(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    import primme

    op = _CountingScipy(problem.matrix, budget)

    tol = problem.tol

    def convtest(value: float, vector: Any, residual_norm: float) -> bool:
        return bool(residual_norm <= tol * abs(value))

    values, vectors = primme.eigsh(op, k, which=which, tol=tol, convtest=convtest,
                                   v0=_start(problem.n, 1, seed)[:, None].astype(problem.matrix.dtype))
    return values, vectors, "default method (block size 1)"


def _run_scipy_lobpcg(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                      tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    op = _CountingScipy(problem.matrix, budget)
    scale = float(np.min(np.abs(problem.reference(k, which))))
    X = np.random.default_rng(seed).standard_normal((problem.n, k)).astype(problem.matrix.dtype)
    values, vectors = sla.lobpcg(op, X, tol=problem.tol * scale, maxiter=10**6, largest=(which == "LA"))
    return values, vectors, f"block = k, tol = {problem.tol:g} |lambda_k| (absolute)"


def _run_torch_lobpcg(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                      tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    import torch._linalg_utils as lu

    A = problem.tensor
    if problem.n < 3 * k:
        raise ValueError("torch.lobpcg needs n >= 3 k")
    X = torch.from_numpy(np.random.default_rng(seed).standard_normal((problem.n, k))).to(A.device, A.dtype)
    # torch's criterion: ||r|| / ((||A||_est + |lambda|) ||x||) with ||A||_est = ||A X0||_F / ||X0||_F
    # (about the RMS eigenvalue); map our relative tol onto it as PEERS.md does.
    rms = float(torch.linalg.matrix_norm(A @ X) / torch.linalg.matrix_norm(X))
    lam = float(np.min(np.abs(problem.reference(k, which))))
    tol = problem.tol * lam / (rms + lam)
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
    return values.double().cpu().numpy(), vectors.double().cpu().numpy(), "method=ortho"


def _run_ours_si(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray, str]]:
    def runner(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
               tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
        op = _CountingOperator(problem.operator, budget)
        result = solve(name, op, k, which="LM", sigma=problem.sigmas[which], tol=problem.tol, seed=seed,
                       tracker=tracker)
        budget.count = result.n_matvec  # solves with the factorization + products with A (counted there too)
        budget.charge(0)
        note = result.status.value if result.status.value != "converged" else ""
        return (result.eigenvalues.detach().double().cpu().numpy(), result.eigenvectors.detach().double().cpu().numpy(),
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
    values, vectors = sla.eigsh(A, k=k, sigma=sigma, which="LM", tol=problem.tol, v0=_start(problem.n, 1, seed),
                                OPinv=_CountingSolve(lu, problem.n, budget))
    return values, vectors, "mode 3, OPinv = splu(A - sigma I); matvecs = solves"


def _run_scipy_lobpcg_lu(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
                         tracker: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    import scipy.sparse as sp

    lu = sla.splu(sp.csc_matrix(problem.matrix))
    op = _CountingScipy(problem.matrix, budget)
    scale = float(np.min(np.abs(problem.reference(k, which))))
    X = np.random.default_rng(seed).standard_normal((problem.n, k))
    values, vectors = sla.lobpcg(op, X, M=_CountingSolve(lu, problem.n, budget), tol=problem.tol * scale, maxiter=10**6,
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


class _CountingScipyRect(_CountingScipy):
    """scipy LinearOperator of an m x n matrix with A^T, charging a Budget for both products."""

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
        result = solve("golub_kahan", op, k, which=which, tol=problem.tol, seed=seed, max_iter=10**6,
                       tracker=tracker, **extras)
        note = result.status.value if result.status.value != "converged" else ""
        return (result.singular_values.detach().double().cpu().numpy(),
                (result.U.detach().double().cpu().numpy(), result.V.detach().double().cpu().numpy()),
                (note + " " + f"{result.n_iter} it").strip())
    return runner


def _run_svds(solver: str) -> Callable[..., tuple[np.ndarray, Any, str]]:
    def runner(problem: BenchProblem, k: int, which: str, budget: Budget, seed: int,
               tracker: Any = None) -> tuple[np.ndarray, Any, str]:
        op = _CountingScipyRect(problem.matrix, budget)
        m, n = problem.matrix.shape
        kwargs: dict[str, Any] = {}
        if solver == "propack":
            kwargs["maxiter"] = min(min(m, n), PROPACK_MAX_KRYLOV)
        U, s, Vh = sla.svds(op, k=k, which="LM" if which == "LA" else "SM", tol=math.sqrt(problem.tol), solver=solver,
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
        return (S[:k].double().cpu().numpy(), (U[:, :k].double().cpu().numpy(), V[:, :k].double().cpu().numpy()),
                f"q = {q}, niter = {niter}; matvecs analytic")
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
    A = problem.exact  # float64 on the CPU whatever the run's dtype
    res = np.sqrt(np.linalg.norm(np.asarray(A @ V) - U * got, axis=0) ** 2
                  + np.linalg.norm(np.asarray(A.T @ U) - V * got, axis=0) ** 2) / np.maximum(np.abs(got), 1e-300)
    return err, float(np.max(res))


# ----------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------
def _errors(problem: BenchProblem, k: int, which: str, values: np.ndarray,
            vectors: np.ndarray) -> tuple[float, float]:
    """(eig_err, resid) in float64 on the CPU, with ``problem.exact`` whatever the run's dtype."""
    if isinstance(problem, SVDBenchProblem):
        return _svd_errors(problem, k, which, values, vectors)
    ref = problem.reference(k, which)
    values = np.asarray(values, dtype=np.float64)
    if values.size < k or not np.all(np.isfinite(values)):
        return math.inf, math.inf
    if which in problem.sigmas:
        order = np.argsort(np.abs(values - problem.sigmas[which]), kind="stable")
    else:
        order = np.argsort(-values) if which == "LA" else np.argsort(values)
    got = values[order][:k]
    eig_err = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))
    V = np.asarray(vectors, dtype=np.float64)[:, order][:, :k]
    AV = np.asarray(problem.exact @ V)
    res = np.linalg.norm(AV - V * got, axis=0) / (np.abs(got) * np.linalg.norm(V, axis=0))
    return eig_err, float(np.max(res))


def on_device(solver: str, problem: BenchProblem) -> bool:
    """Whether this row runs on the problem's (non-CPU) device: ours and the torch peers do, scipy peers never."""
    if problem.device.type == "cpu":
        return False
    return backend(solver) in ("ours", "torch") or solver in ("lanczos_si", "lobpcg_si")


def backend(solver: str) -> str | None:
    """Which product a row's matvecs are: "scipy" (ARPACK, PRIMME, scipy lobpcg, scipy svds:
    ``matrix @ x``), "torch" (torch.lobpcg, torch.svd_lowrank: ``tensor @ X``) or "ours" (our
    operator's ``matvec``); None for the shift-invert rows, whose "matvecs" are mostly solves with
    a factorization (no matvec floor: no overhead)."""
    if solver in SHIFT_INVERT_ROWS:
        return None
    return {"arpack": "scipy", "primme": "scipy", "scipy_lobpcg": "scipy", "svds_arpack": "scipy",
            "svds_propack": "scipy", "torch_lobpcg": "torch", "torch_svd_lowrank": "torch",
            "torch_svd_lowrank_8": "torch"}.get(solver, "ours")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(runner: Callable[..., Any], problem: BenchProblem, k: int, which: str, cap_s: float, seed: int,
           tracker: Any = None, solver: str = "") -> tuple[Any, Budget, float, float, str | None]:
    device = problem.device if on_device(solver, problem) else torch.device("cpu")
    budget = Budget(cap_s, clock=time.perf_counter if device.type != "cpu" else time.process_time)
    failure: str | None = None
    out = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        budget.t0 = budget.clock()
        try:
            out = runner(problem, k, which, budget, seed, tracker=tracker)
            _sync(device)
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
                      seed: int, solver: str = "lanczos") -> tuple[float, float]:
    """(% time added by a HistoryTracker, % of the solve spent building records): CPU time on
    the CPU, wall time on a GPU (``Monitor.record`` is timed with the CPU clock either way;
    its work is on the host)."""
    plain, tracked = [], []
    wall_clock = on_device(solver, problem)
    with _RecordTimer() as timer:
        for _ in range(3):  # alternate, keep the fastest of each: the host is shared
            _out, _b, wall, cpu, fail = _timed(runner, problem, k, which, cap_s, seed, solver=solver)
            if fail:
                return math.nan, math.nan
            plain.append(wall if wall_clock else cpu)
            _out, _b, wall, cpu, fail = _timed(runner, problem, k, which, cap_s, seed, tracker=HistoryTracker(),
                                               solver=solver)
            if fail:
                return math.nan, math.nan
            tracked.append(wall if wall_clock else cpu)
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
            torch.set_num_threads(_THREADS)  # also set in the parent; the BLAS variables are inherited
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
    """One (solver, problem, case) run: the row's measured fields (runs in the child when isolated).

    The row's clock is CPU time on the CPU and wall time on a GPU (:func:`on_device`): the cap,
    the repeat rule and the overhead use it. On a GPU the row also gets the device's peak
    allocated memory during its runs (``peak_bytes``) and its growth over the start.
    """
    runner = RUNNERS[solver]
    wall_clock = on_device(solver, problem)
    gpu = problem.device if wall_clock and problem.device.type == "cuda" else None
    if gpu is not None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(gpu)
        gpu_start = torch.cuda.memory_allocated(gpu)
    out, budget, wall, cpu, failure = _timed(runner, problem, k, which, cap_s, seed, solver=solver)
    update: dict[str, Any] = {"matvecs": budget.count, "wall_s": wall, "cpu_s": cpu, "runs": 1}
    if gpu is not None:
        update["peak_bytes"] = torch.cuda.max_memory_allocated(gpu)
        update["peak_growth"] = max(update["peak_bytes"] - gpu_start, 0)
    if failure is not None:
        status = "CAP" if failure.startswith("CAP") else "MEM" if failure.startswith("MEM") else "FAIL"
        update.update(status=status, note=failure)
        if gpu is not None:
            torch.cuda.empty_cache()
        return update
    seconds = wall if wall_clock else cpu
    spent = seconds
    while seconds < repeat_below_s and update["runs"] < REPEAT_MAX and spent < 2.0 * repeat_below_s:
        out_i, budget_i, wall_i, cpu_i, failure_i = _timed(runner, problem, k, which, cap_s, seed, solver=solver)
        if failure_i is not None:
            break
        update["runs"] += 1
        seconds_i = wall_i if wall_clock else cpu_i
        spent += seconds_i
        if seconds_i < seconds:  # the fastest run is the row: its time, its matvecs, its answer
            out, wall, cpu, seconds = out_i, wall_i, cpu_i, seconds_i
            update["matvecs"] = budget_i.count
        del out_i
    update.update(wall_s=wall, cpu_s=cpu)
    values, vectors, note = out
    del out
    eig_err, resid = _errors(problem, k, which, values, vectors)
    del values, vectors
    update.update(status="done", eig_err=eig_err, resid=resid, note=note,
                  ok=bool(eig_err <= problem.ok_threshold(k, which)))
    if solver == "lanczos" and seconds <= overhead_max_s:
        update["tracker_%"], update["record_%"] = _tracker_overhead(runner, problem, k, which, cap_s, seed, solver)
    if gpu is not None:
        torch.cuda.empty_cache()
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
    update["peak_bytes"] = outcome.peak_rss
    update["peak_growth"] = grown
    return update


def measure_t_mv(problem: BenchProblem, kind: str, *, min_seconds: float = 0.05, batches: int = 3,
                 max_reps: int = 20_000) -> float:
    """Seconds of one single-vector product on the backend ``kind`` (see :func:`backend`).

    "scipy": ``problem.matrix @ x`` (numpy / scipy CSR, on the CPU); "ours":
    ``problem.operator.matvec(x)``; "torch": ``torch._linalg_utils.matmul(problem.tensor, x)``
    with x of shape (n, 1), the call torch.lobpcg makes. CPU time on the CPU; on a GPU wall
    time between two ``torch.cuda.synchronize`` calls. After two warm-up products, each batch
    repeats the product until ``min_seconds`` have passed (at most ``max_reps`` times); the
    fastest batch's time per product counts (the floor of PEERS.md section 3, which also takes
    the smaller of a measurement before and after the runs: :func:`run_benchmark`).
    """
    import torch._linalg_utils as lu

    n = problem.n
    device = problem.device if kind != "scipy" else torch.device("cpu")
    rng = np.random.default_rng(12345)
    if kind == "scipy":
        x = rng.standard_normal(n).astype(problem.matrix.dtype)
        matrix = problem.matrix

        def product() -> Any:
            return matrix @ x
    elif kind == "ours":
        xt = torch.from_numpy(rng.standard_normal(n)).to(device=device, dtype=problem.dtype)
        op = problem.operator

        def product() -> Any:
            return op.matvec(xt)
    elif kind == "torch":
        xt = torch.from_numpy(rng.standard_normal((n, 1))).to(device=device, dtype=problem.dtype)
        tensor = problem.tensor

        def product() -> Any:
            return lu.matmul(tensor, xt)
    else:
        raise ValueError(f"unknown backend {kind!r}; use scipy, ours or torch")
    clock = time.perf_counter if device.type != "cpu" else time.process_time
    for _ in range(2):
        product()
    _sync(device)
    best = math.inf
    for _ in range(batches):
        reps = 0
        t0 = clock()
        elapsed = 0.0
        while reps < max_reps and (reps < 1 or elapsed < min_seconds):
            product()
            reps += 1
            if device.type != "cpu" and reps % 16 and reps < max_reps:
                continue  # on a GPU sync (and read the clock) every 16 products only
            _sync(device)
            elapsed = clock() - t0
        _sync(device)
        elapsed = clock() - t0
        best = min(best, elapsed / reps)
    if hasattr(problem.operator, "reset_count"):
        problem.operator.reset_count()
    return best


def run_benchmark(problems: Sequence[BenchProblem], solvers: Sequence[str] = OURS + PEERS + SVD_OURS + SVD_PEERS
                  + SHIFT_INVERT_ROWS, *,
                  cap_s: float = 30.0,
                  seed: int = 0, overhead_max_s: float = 2.0, log: Callable[[str], None] | None = None,
                  repeat_below_s: float = REPEAT_BELOW_S,
                  mem_gb: float | None = None, timeout_s: float | None = None, isolate: bool | None = None,
                  skips: _SkipBook | None = None, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float64, tol: float | None = None) -> pd.DataFrame:
    """Run every solver on every (problem, k, which) case; one row each (see the module docstring).

    Each run goes to its own forked child process (``isolate``; default: where the OS allows
    it, and never on CUDA) with ``mem_gb`` GB of address space on top of what it started with (default
    :func:`default_mem_gb`; 0 = no limit) and ``timeout_s`` seconds of wall clock (default
    ``3 cap_s + 6 overhead_max_s + 3 repeat_below_s + 60``; ``repeat_below_s``: runs faster
    than that are repeated, the fastest counts). ``isolate=False`` runs everything in this process,
    without either limit. ``log`` gets each row as a line as soon as it is finished.
    ``skips`` carries the skip rule across calls (one call per problem in :func:`main`).
    ``device`` / ``dtype``: where our solvers and torch.lobpcg run (:meth:`BenchProblem.placed`;
    the scipy peers stay on the CPU, in ``dtype``); ``tol``: default :func:`default_tol`.
    The overhead column divides each row's time by its matvecs times the ``t_mv`` of its backend
    (:func:`measure_t_mv`, the smaller of a measurement before and one after the problem's runs).
    """
    device = torch.device(device)
    if device.type == "cuda":
        if isolate:
            raise RuntimeError("runs on CUDA cannot be isolated: a process forked after CUDA is initialized cannot "
                               "use it, and a memory limit (RLIMIT_AS) breaks CUDA's address-space reservation; "
                               "use isolate=False")
        isolate = False
    isolate = can_isolate() if isolate is None else isolate
    if isolate and not can_isolate():
        raise RuntimeError("isolated runs need os.fork and the resource module (POSIX); use isolate=False")
    mem_gb = default_mem_gb() if mem_gb is None else mem_gb
    timeout_s = (3.0 * cap_s + 6.0 * overhead_max_s + 3.0 * repeat_below_s + 60.0 if timeout_s is None
                 else timeout_s)
    rows: list[dict[str, Any]] = []
    skips = _SkipBook() if skips is None else skips
    for base in problems:
        problem = base.placed(device, dtype, tol)
        kinds = sorted({kind for solver in solvers if solver in RUNNERS and available(solver)[0]
                        and _applies(problem, solver) and (kind := backend(solver)) is not None})
        t_mv = {kind: measure_t_mv(problem, kind) for kind in kinds}
        if log is not None and t_mv:
            log(f"# {problem.key} on {problem.device} {str(problem.dtype).replace('torch.', '')}: t_mv "
                + ", ".join(f"{kind} {seconds * 1e3:.4g} ms" for kind, seconds in t_mv.items()))
        problem_rows: list[dict[str, Any]] = []
        for k, which in problem.cases:
            case_rows = []
            if log is not None:
                log(f"# {problem.key} k={k} {which}: ok when eig_err <= {problem.ok_threshold(k, which):.2g}")
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
                if problem.device.type != "cpu" and not on_device(solver, problem) and row["status"] != "skip":
                    row["note"] = ("on the CPU (scipy), CPU seconds; " + row["note"]).strip("; ")
                row["overhead"] = _overhead(row, problem, t_mv)
                case_rows.append(row)
                if log is not None:
                    log(_format_row(row))
            arpack = "arpack_si" if which.startswith("SI") else "arpack"
            ref = next((r for r in case_rows if r["solver"] in (arpack, "svds_arpack") and r["status"] == "done"),
                       None)
            for r in case_rows:
                r["mv/arpack"] = r["matvecs"] / ref["matvecs"] if ref and r["status"] == "done" else math.nan
                r["wall/arpack"] = r["wall_s"] / ref["wall_s"] if ref and r["status"] == "done" else math.nan
            problem_rows.extend(case_rows)
        if t_mv:  # the floor again after the runs; the smaller counts
            t_mv = {kind: min(seconds, measure_t_mv(problem, kind)) for kind, seconds in t_mv.items()}
        for r in problem_rows:
            r["overhead"] = _overhead(r, problem, t_mv)
            seconds = t_mv.get(backend(r["solver"]), math.nan)
            r["t_mv_ms"] = seconds * 1e3 if r["status"] != "skip" else math.nan
            r["peak_gb"] = r.pop("peak_bytes", math.nan) / 2**30
            r["grow_gb"] = r.pop("peak_growth", math.nan) / 2**30
        rows.extend(problem_rows)
        del problem
    return pd.DataFrame(rows, columns=COLUMNS)


def _overhead(row: dict[str, Any], problem: BenchProblem, t_mv: dict[str, float]) -> float:
    """time / (matvecs x t_mv): CPU seconds on the CPU, wall seconds on a GPU; NaN without a run."""
    seconds = row["wall_s"] if on_device(row["solver"], problem) else row["cpu_s"]
    floor = float(row["matvecs"]) * t_mv.get(backend(row["solver"]), math.nan)
    if row["status"] == "skip" or not (math.isfinite(floor) and floor > 0):
        return math.nan
    return float(seconds / floor)


def _same_as_default(solver: str, k: int) -> str | None:
    """Rows that would repeat another row's run exactly (not run, with this note)."""
    if solver == "lanczos_b1" and default_block_size(k) == 1:
        return f"same run as lanczos (its default block size is 1 for k = {k})"
    return None


def _format_row(row: dict[str, Any]) -> str:
    peak = f" peak={row['peak_bytes'] / 2**30:.2f}GB(+{row['peak_growth'] / 2**30:.2f})" if "peak_bytes" in row else ""
    overhead = f" ovh={row['overhead']:.2f}" if math.isfinite(row.get("overhead", math.nan)) else ""
    return (f"{row['problem']:<22} k={row['k']:<2} {row['which']} {row['solver']:<16} {row['status']:<5} "
            f"mv={row['matvecs']!s:>6} wall={row['wall_s']:.2f}s cpu={row['cpu_s']:.2f}s "
            f"err={row['eig_err']:.1e} res={row['resid']:.1e}{overhead}{peak} {row['note']}")


def format_table(frame: pd.DataFrame) -> str:
    """The table as fixed-width text (ratios to 2 digits, errors in e-notation)."""
    def fmt(column: str, value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            if column in ("eig_err", "resid", "t_mv_ms"):
                return f"{value:.1e}"
            if column in ("tracker_%", "record_%"):
                return f"{value:+.1f}" if column == "tracker_%" else f"{value:.1f}"
            return f"{value:.2f}"
        return str(value)
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = [fmt(column, v) for v in shown[column]]
    return shown.to_string(index=False)


# torch / BLAS threads of every run (``--threads``); the forked children read it too.
_THREADS = 1


def _ensure_threads(threads: int = 1) -> None:
    """Re-exec once with the BLAS thread variables set (OpenBLAS reads them only at load)."""
    wanted = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if os.environ.get("EXPLORER_BENCH_REEXEC") != "1" and any(os.environ.get(k) != v for k, v in wanted.items()):
        env = dict(os.environ, **wanted, EXPLORER_BENCH_REEXEC="1")
        os.execve(sys.executable, [sys.executable, "-m", "explorer.bench", *sys.argv[1:]], env)


def parse_cases(tokens: Sequence[str]) -> tuple[tuple[int, str], ...]:
    """``["10:LA", "1:SA"]`` -> ((10, "LA"), (1, "SA")); ValueError with the accepted form otherwise."""
    cases = []
    for token in tokens:
        k_text, _, which = str(token).partition(":")
        which = which.strip().upper()
        try:
            k = int(k_text)
        except ValueError:
            k = 0
        if k < 1 or which not in ("LA", "SA"):
            raise ValueError(f"--cases takes K:WHICH with K >= 1 and WHICH LA or SA (e.g. 10:LA 1:SA), got {token!r}")
        cases.append((k, which))
    return tuple(cases)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with the defaults resolved: ``keys``, ``cap``, ``mem_gb``, ``timeout``, ``solvers``,
    ``cases`` (None: each problem's own), ``device`` (a torch.device), ``dtype`` (a torch.dtype), ``tol``."""
    from explorer.operators.devices import parse_device, parse_dtype

    parser = argparse.ArgumentParser(prog="python -m explorer.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 10^4 Laplacian and n = 1000 dense only, 5 s cap")
    parser.add_argument("--problems", nargs="+",
                        help=f"problem keys (default: all of {', '.join(PROBLEM_KEYS)}; opt-in: "
                             f"{', '.join(OPT_IN_KEYS)}; any laplace2d_N<N>, laplace2d_si_N<N> or dense_<kind>_n<n>)")
    parser.add_argument("--cases", nargs="+", metavar="K:WHICH",
                        help="(k, which) cases for every problem instead of their own, e.g. --cases 10:LA 1:SA")
    parser.add_argument("--solvers", nargs="+", choices=OURS + PEERS + SVD_OURS + SVD_PEERS + SHIFT_INVERT_ROWS
                        + EXTRA_OURS,
                        help=f"rows to run (default: all but the opt-in {', '.join(EXTRA_OURS)}; the shift-invert "
                             "rows run only on laplace2d_si_N<N>)")
    parser.add_argument("--svd", action="store_true",
                        help=f"also run the rectangular SVD problems ({', '.join(SVD_KEYS)}): golub_kahan against "
                             "scipy svds (arpack, propack) and torch.svd_lowrank; --quick runs the small one anyway")
    parser.add_argument("--device", default="cpu",
                        help="where our solvers and torch.lobpcg run: cpu (default) or cuda[:i]; the scipy peers "
                             "stay on the CPU")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                        help="working precision of every solver (the accuracy columns are float64 either way)")
    parser.add_argument("--tol", type=float, default=None,
                        help=f"relative residual tolerance (default {TOL:g} in float64, {TOL_FLOAT32:g} in float32)")
    parser.add_argument("--cap", type=float, default=None,
                        help="seconds per run: CPU seconds on the CPU, wall seconds on CUDA (default 30, quick 5)")
    parser.add_argument("--mem-gb", type=float, default=None,
                        help=f"memory cap per run in GB of address space on top of what the run starts with "
                             f"(default {default_mem_gb():g} here: 4 GB or a quarter of physical memory; 0 = none)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="wall-clock seconds per run before its process is killed (default 3 cap + 6 x the "
                             "tracker-overhead limit + 3 x --repeat-below + 60)")
    parser.add_argument("--repeat-below", type=float, default=REPEAT_BELOW_S,
                        help=f"repeat runs faster than this many seconds (up to {REPEAT_MAX} runs, no new one "
                             f"after twice as long) and keep the fastest (default {REPEAT_BELOW_S:g}; 0 = run once)")
    parser.add_argument("--no-isolate", action="store_true",
                        help="run everything in this process (no memory cap, no wall-clock limit; always so on CUDA)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads per run (default 1, the figures of docs/benchmarks.md; CPU time and "
                             "the cap then count every thread: read the wall column)")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    if args.mem_gb is not None and args.mem_gb < 0:
        parser.error("--mem-gb must be >= 0 (0 = no memory cap)")
    if args.tol is not None and not (math.isfinite(args.tol) and args.tol > 0):
        parser.error("--tol must be a positive number, e.g. 1e-6")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    try:
        args.cases = parse_cases(args.cases) if args.cases else None
        args.device = parse_device(args.device)
    except ValueError as err:
        parser.error(str(err).replace("`device`", "--device"))
    args.dtype = parse_dtype(args.dtype)
    args.tol = default_tol(args.dtype) if args.tol is None else args.tol
    args.keys = tuple(args.problems or ((QUICK_KEYS + SVD_QUICK_KEYS) if args.quick else PROBLEM_KEYS))
    if args.svd and not args.problems:
        args.keys += tuple(key for key in SVD_KEYS if key not in args.keys)
    args.cap = args.cap if args.cap is not None else (5.0 if args.quick else 30.0)
    args.mem_gb = default_mem_gb() if args.mem_gb is None else args.mem_gb
    args.overhead_max_s = 1.0 if args.quick else 2.0
    args.timeout = (args.timeout if args.timeout is not None
                    else 3.0 * args.cap + 6.0 * args.overhead_max_s + 3.0 * args.repeat_below + 60.0)
    args.solvers = tuple(args.solvers or OURS + PEERS + SVD_OURS + SVD_PEERS + SHIFT_INVERT_ROWS)
    args.isolate = not args.no_isolate and can_isolate() and args.device.type == "cpu"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from explorer.operators.devices import device_label

    global _THREADS
    args = parse_args(argv)
    _THREADS = args.threads
    if argv is None:
        _ensure_threads(args.threads)
    # The parent stays on one thread: a child forked after a parallel region of GNU OpenMP hangs
    # in its first one (it inherits a thread pool without its threads). The children (and the
    # runs without isolation, below) use _THREADS.
    torch.set_num_threads(1 if args.isolate else args.threads)
    keys, cap, solvers = args.keys, args.cap, args.solvers
    on_cuda = args.device.type == "cuda"
    if args.isolate:
        limits = (f"one child process per run, memory cap {args.mem_gb:g} GB" if args.mem_gb else
                  "one child process per run, no memory cap") + f", wall limit {args.timeout:g} s"
    elif on_cuda:
        limits = ("all runs in this process (on CUDA: no fork, which breaks CUDA, and no memory cap, which breaks "
                  "its address-space reservation); timings are wall seconds with torch.cuda.synchronize, the cap is "
                  "wall seconds; peak_gb = torch.cuda.max_memory_allocated during the run")
    else:
        limits = "all runs in this process (no memory cap, no wall limit)"
    clock = "wall" if on_cuda else "CPU"
    print(f"# explorer.bench: {len(keys)} problem(s) on {device_label(str(args.device))}, cap {cap:g} s {clock} per "
          f"run, tol {args.tol:g}, {str(args.dtype).replace('torch.', '')}, "
          f"torch threads {args.threads}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; "
          f"{limits}", flush=True)
    for solver in solvers:
        ok, why = available(solver)
        if not ok:
            print(f"# note: {solver} skipped: {why}", flush=True)
    frames = []
    skips = _SkipBook()  # shared, so a cap at n = 10^4 skips the case at n = 10^5
    for key in keys:
        t = time.perf_counter()
        problem = make_problems([key], cases=args.cases)[0]
        m, n = problem.operator.shape
        size = f"n = {n:,}" if m == n else f"{m:,} x {n:,}"
        print(f"# built {key} ({size}) in {time.perf_counter() - t:.1f} s", flush=True)
        frames.append(run_benchmark([problem], solvers, cap_s=cap, overhead_max_s=args.overhead_max_s,
                                    repeat_below_s=args.repeat_below,
                                    log=lambda line: print("  " + line, flush=True), mem_gb=args.mem_gb,
                                    timeout_s=args.timeout, isolate=args.isolate, skips=skips,
                                    device=args.device, dtype=args.dtype, tol=args.tol))
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
