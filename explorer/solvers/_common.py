"""What every solver shares: argument validation, the Monitor (tracking + result), helpers.

Each solver function starts with ``validate_common`` (scipy's ``_iv`` idea: one place
that checks and normalizes every shared argument, with messages that name the
parameter, the rule, the value received and a hint), then creates a ``Monitor``
that times the solve, counts matvecs on a per-solve view of the operator, builds
one ``IterationRecord`` per iteration, turns a tracker's ``StopSolve`` into a
``stop`` answer, and assembles the ``EigenResult``.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from explorer.operators import SUPPORTED_DTYPES, CountedOperator, LinearOperator, as_operator, as_rectangular_operator
from explorer.tracking.results import EigenResult, SingularResult, SolveStatus
from explorer.tracking import IterationRecord, NullTracker, SolveStart, StopSolve, Tracker

__all__ = [
    "WHICH",
    "Validated",
    "validate_common",
    "Monitor",
    "make_generator",
    "random_block",
    "select_order",
    "residual_threshold",
    "true_residual_norms",
    "orthogonality_loss",
]

WHICH = ("LA", "SA", "LM", "BE")
_WHICH_HELP = {"LA": "largest algebraic", "SA": "smallest algebraic", "LM": "largest magnitude",
               "BE": "both ends"}
_WHICH_HELP_SVD = {"LA": "largest singular values", "SA": "smallest singular values"}


def check_int(name: str, value: Any, *, minimum: int | None = 1, maximum: int | None = None, hint: str = "") -> int:
    """An integer parameter, the same rule everywhere (solvers, problems, forms).

    Python and numpy integers are accepted, and integral floats (``5.0``, as JSON or a number
    widget may give); bools and anything else are refused with a TypeError, values outside
    ``[minimum, maximum]`` (either may be None) with a ValueError that names the rule, the
    value received and ``hint``.
    """
    if isinstance(value, (bool, np.bool_)):
        integral = None
    elif isinstance(value, (int, np.integer)):
        integral = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        integral = int(value)
    else:
        integral = None
    if integral is None:
        raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__})"
                        + (f"; {hint}" if hint else ""))
    if (minimum is not None and integral < minimum) or (maximum is not None and integral > maximum):
        if maximum is None:
            rule = "a positive integer" if minimum == 1 else f">= {minimum}"
        elif minimum is None:
            rule = f"<= {maximum:,}"
        else:
            rule = f"between {minimum} and {maximum:,}"
        raise ValueError(f"`{name}` must be {rule}, got {name}={integral:,}" + (f"; {hint}" if hint else ""))
    return integral


# Largest |log2| of a product's entries run without rescaling (ProductUnits): squares of
# float64 entries overflow past 2^512 and underflow below 2^-511 (float32: 2^64, 2^-63),
# and a norm sums n of them; these leave a margin of 2^100 (2^20) for n and growth.
SAFE_EXPONENT = {torch.float64: 400, torch.float32: 40}


class ProductUnits:
    """Products of A in units of ``scale``, a power of two (so exact), fixed by the first one.

    Norms are square roots of sums of squares: with entries past ~2^±500 (float64) or
    ~2^±60 (float32) the squares overflow or underflow, and a vector of norm 1e-200 "is"
    zero (a Krylov solver would see an invariant subspace at every step, power iteration
    "A x = 0"). When the first product's largest entry lies outside
    ``2^±SAFE_EXPONENT[dtype]`` the solver works with ``A / scale`` instead (every test in
    it is relative); give the ``Monitor`` the same object (``Monitor.units``) and it reports
    values and residuals back in A's units. Otherwise ``scale`` stays 1 and products pass
    through untouched (the same tensor, no copy).
    """

    def __init__(self, dtype: torch.dtype, space: Any = None) -> None:
        self.limit = SAFE_EXPONENT.get(dtype, SAFE_EXPONENT[torch.float32])
        self.scale, self._inverse, self._fixed = 1.0, 1.0, False
        self.space = space  # sharded vectors: the largest entry over all ranks (``_space``)

    def __call__(self, W: torch.Tensor) -> torch.Tensor:
        """``W / scale`` (a new tensor when ``scale`` is not 1: W may be the operator's own
        storage, or even its input)."""
        if not self._fixed:
            self._fixed = True
            if self.space is not None:
                top = self.space.max_abs(W)
            else:
                top = float(W.abs().max()) if W.numel() else 0.0
            if 0.0 < top < math.inf:
                exponent = math.frexp(top)[1]
                if abs(exponent) > self.limit:
                    self.scale, self._inverse = math.ldexp(1.0, exponent), math.ldexp(1.0, -exponent)
        return W if self._inverse == 1.0 else W * self._inverse


class UnitsOperator(LinearOperator):
    """A solver's view of an operator in ``ProductUnits``: ``A / units.scale`` (its products,
    and its diagonal). Counts pass through to ``base``."""

    def __init__(self, base: LinearOperator, units: ProductUnits) -> None:
        super().__init__(base.shape, base.dtype, base.device, is_symmetric=base.is_symmetric)
        self.base, self.units = base, units
        self.space = base.space

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.units(self.base.matmat(X))

    @property
    def rows_kernel(self) -> bool:
        return self.base.rows_kernel

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:
        self.base.matvecs_into(Xt, out)
        scaled = self.units(out)
        if scaled is not out:
            out.copy_(scaled)

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(self.base.matvec(x))

    def _rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.units(self.base.rmatmat(X))

    def diagonal(self) -> torch.Tensor | None:
        d = self.base.diagonal()
        return None if d is None else self.units(d)

    def _to(self, device: torch.device, dtype: torch.dtype) -> "UnitsOperator":
        return UnitsOperator(self.base.to(device, dtype), self.units)

    @property
    def kind(self) -> str:
        return self.base.kind


def nonfinite_message(where: str, n_matvec: int, kept: str) -> str:
    """The BREAKDOWN message of every solver when the operator returned NaN or Inf."""
    return (f"The operator returned NaN or Inf ({where}, after {n_matvec} matvecs; an HVP that overflowed, a "
            f"function that divides by zero?); the result is {kept}.")


def is_real_number(value: Any) -> bool:
    """A real scalar (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Validated:
    operator: CountedOperator  # per-solve counting view
    k: int
    which: str
    tol: float
    max_iter: int
    B: CountedOperator | None
    X0: torch.Tensor | None


def validate_common(
    solver: str,
    operator: Any,
    k: Any,
    *,
    which: Any,
    tol: Any,
    max_iter: Any,
    default_max_iter: int,
    supported_which: Sequence[str],
    k_max: int | None = None,
    X0: Any = None,
    B: Any = None,
    supports_B: bool = False,
    rectangular: bool = False,
) -> Validated:
    """Check and normalize the shared arguments of every solver.

    ``rectangular=True`` (the SVD solvers): any m x n operator that provides ``A^T``
    (``as_rectangular_operator``), ``1 <= k <= min(m, n)``, ``X0`` of length n (the right side);
    ``which`` LA / SA then mean the largest / smallest singular values. Otherwise the operator
    must be square (eigenvalues), and a rectangular one is refused with a pointer to the SVD
    solvers.
    """
    if rectangular:
        op = operator if isinstance(operator, LinearOperator) else as_rectangular_operator(operator)
    else:
        op = operator if isinstance(operator, LinearOperator) else as_operator(operator)
    if op.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"`operator` must be float32 or float64, got {op.dtype}; use `operator.to(dtype=torch.float64)`")
    if not rectangular and op.shape[0] != op.shape[1]:
        raise ValueError(f"`operator` must be square for {solver}, got shape {op.shape[0]} x {op.shape[1]}; eigenvalues "
                         "need an n x n matrix. For the singular values of a rectangular matrix use an SVD solver "
                         "such as `golub_kahan`")
    n = op.shape[1]
    if min(op.shape) == 0:
        raise ValueError("`operator` is empty (n = 0); load a matrix with at least one row")
    k = check_int("k", k, minimum=None)
    size = min(op.shape)
    limit = size if k_max is None else min(size, k_max)
    if not 1 <= k <= limit:
        if rectangular:
            raise ValueError(f"`k` must satisfy 1 <= k <= {limit}, got k={k}; an {op.shape[0]} x {op.shape[1]} operator "
                             f"has min(m, n) = {size} singular values: lower `k`")
        hint = "lower `k`" + ("" if k_max is None or k_max >= n else f" (this solver needs k <= {k_max} for n = {n})")
        raise ValueError(f"`k` must satisfy 1 <= k <= {limit}, got k={k}; {hint} or use `eigh` for all eigenvalues")
    if not isinstance(which, str) or which.upper() not in supported_which:
        helps = _WHICH_HELP_SVD if rectangular else _WHICH_HELP
        options = ", ".join(f"{w} ({helps.get(w, _WHICH_HELP.get(w, w))})" for w in supported_which)
        raise ValueError(f"`which` must be one of {options} for {solver}, got {which!r}")
    which = which.upper()
    if not is_real_number(tol) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"`tol` must be a positive finite number, got tol={tol!r}; e.g. 1e-6 (float64) or 1e-4 (float32)")
    if max_iter is None:
        max_iter = default_max_iter
    max_iter = check_int("max_iter", max_iter, hint="the most iterations before the solver gives up")
    B_op = None
    if B is not None:
        if not supports_B:
            raise ValueError(f"{solver} does not solve generalized problems A x = lambda B x; use `lobpcg` or `eigh` with `B`")
        B_lin = B if isinstance(B, LinearOperator) else as_operator(B, name="B")
        if B_lin.shape != op.shape:
            raise ValueError(f"`B` must have the same shape as `operator` {op.shape}, got {B_lin.shape}")
        B_op = CountedOperator(B_lin.to(op.device, op.dtype))
    X0_t = None
    if X0 is not None:
        X0_t = torch.as_tensor(X0)
        if X0_t.ndim == 1:
            X0_t = X0_t.unsqueeze(1)
        if X0_t.ndim != 2 or X0_t.shape[0] != n:
            side = " (a start on the right: one entry per column of the operator)" if rectangular else ""
            raise ValueError(f"`X0` must have shape ({n},) or ({n}, b){side}, got {tuple(torch.as_tensor(X0).shape)}")
        if not bool(torch.isfinite(X0_t).all()):
            raise ValueError("`X0` contains NaN or Inf; pass a finite starting block or None")
        # Only the directions of X0 matter: unit columns (zero ones stay zero), scaled through
        # column_norms, so a start of size 1e200 neither overflows a norm (power iteration
        # stopped with "A x = 0") nor sets the units of the first product (the randomized
        # method then reported wrong values as CONVERGED).
        X0_t = X0_t.to(device="cpu", dtype=torch.float64)  # (on the CPU: MPS has no float64)
        norms = column_norms(X0_t)
        X0_t = (X0_t / torch.where(norms > 0, norms, torch.ones_like(norms))).to(device=op.device, dtype=op.dtype)
    return Validated(CountedOperator(op), k, which, float(tol), int(max_iter), B_op, X0_t)


def make_generator(seed: int | None) -> torch.Generator:
    """A local CPU generator (never the global RNG). seed=None draws fresh entropy; otherwise
    a non-negative integer (``check_int``: 3.5 or "abc" is refused rather than truncated)."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(check_int("seed", seed, minimum=0, hint="any whole number >= 0, or None for a fresh one"))
    return generator


def random_block(n: int, b: int, generator: torch.Generator, *, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """Gaussian (n, b) block drawn on the CPU (same numbers on every device), then moved."""
    return torch.randn(n, b, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def select_order(values: torch.Tensor, which: str) -> torch.Tensor:
    """Indices that put ``values`` in ``which`` order (best first)."""
    if which == "LA":
        return torch.argsort(values, descending=True)
    if which == "SA":
        return torch.argsort(values)
    if which == "LM":
        return torch.argsort(values.abs(), descending=True)
    if which == "BE":  # alternate largest / smallest
        ascending = torch.argsort(values)
        order = []
        lo, hi = 0, len(ascending) - 1
        while lo <= hi:
            order.append(int(ascending[hi])); hi -= 1
            if lo <= hi:
                order.append(int(ascending[lo])); lo += 1
        return torch.tensor(order, dtype=torch.long, device=values.device)
    raise ValueError(f"unknown `which` {which!r}")


def threshold_floor(norm_estimate: float, dtype: torch.dtype) -> float:
    """``sqrt(eps) * ||A||_est``: the floor of ``residual_threshold`` (solvers whose small work is
    in numpy or Python floats apply the same formula, ``tol * max(|theta|, floor)``, with it)."""
    info = torch.finfo(dtype)
    return math.sqrt(info.eps) * max(norm_estimate, info.tiny)


def residual_threshold(ritz_values: torch.Tensor, tol: float, norm_estimate: float) -> torch.Tensor:
    """Convergence threshold per pair: ``tol * max(|theta_i|, sqrt(eps) * ||A||_est)``.

    Relative to |lambda| (the criterion ARPACK and PRIMME use, ../shared/PEERS.md),
    with a floor relative to ||A|| so that an eigenvalue at (or near) zero can
    still converge. Generalized problems compare ``||A x - theta B x|| / ||B x||`` with it
    (see ``true_residual_norms``).
    """
    return tol * torch.clamp(ritz_values.abs(), min=threshold_floor(norm_estimate, ritz_values.dtype))


def true_residual_norms(operator: LinearOperator, X: torch.Tensor, values: torch.Tensor,
                        B: LinearOperator | None = None, AX: torch.Tensor | None = None) -> torch.Tensor:
    """``||A x_i - lambda_i x_i||`` for the columns of X (costs k matvecs unless AX given).

    With B: ``||A x_i - lambda_i B x_i|| / ||B x_i||``, the residual of x_i scaled to
    ``||B x_i|| = 1``. It does not depend on how x is normalized nor on the scales of A and
    B, and ``residual_threshold`` compares it with ``tol |lambda|`` as for a standard
    problem. (With x B-normalized and no division the test had B-dependent units: on the
    1-D finite-element pencil a mass matrix scaled by 1e-6 stopped with relative errors of
    3e-6 where the unscaled one reached 1e-12, and scaled by 1e6 it never met tol 1e-10.)
    """
    if X.shape[1] == 0:
        return torch.zeros(0, dtype=X.dtype, device=X.device)
    AX = operator.matmat(X) if AX is None else AX
    if B is None:
        return column_norms(AX - X * values.unsqueeze(0))
    BX = B.matmat(X)
    return column_norms(AX - BX * values.unsqueeze(0)) / column_norms(BX)


def column_norms(R: torch.Tensor) -> torch.Tensor:
    """2-norms of the columns of R without overflow or underflow in the squares: each column is
    divided by its largest entry first (as LAPACK's xNRM2 does; one more pass, so it is meant for
    final residuals, not inner loops). Solvers that rescale A (``ProductUnits``) never need it;
    ``eigh`` on a 1e300-sized matrix does."""
    top = R.abs().amax(dim=0)
    safe = torch.where(top > 0, top, torch.ones_like(top))
    return torch.linalg.vector_norm(R / safe, dim=0) * safe


# A residual within this many eps ||A|| of zero is near the rounding level of its dtype: products
# of A carry ~eps ||A|| of rounding each, and a solver's recurrences and updates add tens of them
# (where Lanczos and LOBPCG stall on the float32 2-D Laplacian: docs/benchmarks.md).
# explorer.analysis.diagnosis flags a *tolerance* below ATTAINABLE_FACTOR = 10 eps ||A|| as unattainable;
# this wider band is for residuals that missed tol and stopped improving.
ROUNDING_LEVEL = 100


def rounding_level(residual: float, norm_estimate: float, dtype: torch.dtype) -> float:
    """``residual`` in units of eps ||A|| (any consistent units for both; inf when unknown):
    at most ``ROUNDING_LEVEL`` means near the rounding level of ``dtype``."""
    if not (norm_estimate > 0 and math.isfinite(residual)):
        return math.inf
    return residual / (torch.finfo(dtype).eps * norm_estimate)


def rounding_note(residual: float, norm_estimate: float, dtype: torch.dtype) -> str:
    """A sentence for a user whose run missed tol with ``residual`` (absolute, the worst missed
    pair, in A's units like ``norm_estimate``) already within ``ROUNDING_LEVEL`` eps ||A|| of
    zero, else ""."""
    level = rounding_level(residual, norm_estimate, dtype)
    if level > ROUNDING_LEVEL:
        return ""
    eps = torch.finfo(dtype).eps
    name = str(dtype).replace("torch.", "")
    return (f"The residuals that miss it are down to {level:.2g} eps ||A|| (||A|| ~ {norm_estimate:.3g}, eps = "
            f"{eps:.1e} in {name}), near the rounding level, where further progress is unlikely: loosen `tol`"
            + (" or solve in float64." if dtype == torch.float32 else "."))


def orthogonality_loss(V: torch.Tensor, BV: torch.Tensor | None = None) -> float:
    """``max |V^T B V - I|`` (entrywise max)."""
    if V.shape[1] == 0:
        return 0.0
    gram = V.T @ (V if BV is None else BV)
    gram.diagonal().sub_(1)
    return float(gram.abs().max())


_TORCH_DTYPE_OF = {np.float64: torch.float64, np.float32: torch.float32, np.float16: torch.float16,
                   np.bool_: torch.bool, np.int64: torch.int64, np.int32: torch.int32}
_NUMPY_SAFE = frozenset(_TORCH_DTYPE_OF.values())


# "auto" records (Lanczos' ``ritz_every``, the ``record_every`` of the solvers whose record costs a
# share of each iteration): at least this often (seconds), so that a live view (which refreshes
# every 50-100 ms, ../shared/LIVE.md) gets a fresh record every few of its refreshes on any
# problem size, while a solve of many cheap iterations does not pay a record for each.
RECORD_INTERVAL_S = 0.02


def check_every(name: str, value: Any) -> int:
    """``ritz_every`` / ``record_every`` as a loop reads it: 0 for "auto", else the step count (>= 1)."""
    if isinstance(value, str):
        if value == "auto":
            return 0
        raise ValueError(f"`{name}` must be 'auto' or a whole number >= 1, got {value!r}; "
                         "'auto' records about every 20 ms, 1 records every step")
    return check_int(name, value, hint="use 'auto' (default) or 1 to record every step")


class RecordSchedule:
    """Which iterations get a record, for a solver that has its record's numbers at every iteration.

    ``every`` (from ``check_every``): 1 records every iteration; s > 1 every s-th; 0 ("auto")
    whenever ``RECORD_INTERVAL_S`` has passed since the last record (the live view) and at least
    ``per_doubling`` records per doubling of the iteration count (every iteration up to
    ``per_doubling``, then every ``iteration // per_doubling``-th): a fast run keeps enough of its
    curve for the charts and the diagnosis (``analysis.diagnosis`` reads rates and stagnation off
    the records), about ``per_doubling`` x log2(iterations) records, however fast the machine.
    An *event* the solver names (a pair converged, the last iteration) is always recorded. The
    solve itself never depends on it: only what reaches the tracker (and a Stop, which the
    tracker raises at a record, then comes within about ``RECORD_INTERVAL_S``).
    """

    def __init__(self, every: int, per_doubling: int = 64) -> None:
        self.every, self.per_doubling = every, per_doubling
        self._last, self._last_iteration = -math.inf, 0

    def due(self, iteration: int, event: bool = False) -> bool:
        """Whether ``iteration`` gets a record; a True answer counts as the record made."""
        if self.every == 1 or event:
            due = True
        elif self.every > 1:
            due = iteration % self.every == 0
        else:
            due = (iteration - self._last_iteration >= max(1, iteration // self.per_doubling)
                   or time.perf_counter() - self._last >= RECORD_INTERVAL_S)
        if due:
            self._last, self._last_iteration = time.perf_counter(), iteration
        return due


class _RecordArena:
    """CPU copies of the small per-iteration tensors, carved out of 1 MiB blocks.

    Why not ``t.to("cpu", copy=True)``: every iteration also allocates and frees a few
    n-vectors (80 KB at n = 10^4, below glibc's 128 KB mmap threshold, so on the heap), and
    the tiny record tensors kept in between pin the freed space; glibc cannot reuse it and
    the heap grows by about an n-vector per iteration while a few hundred bytes are kept
    (docs/benchmarks.md). Blocks of 1 MiB are mmap'd and packed
    densely: the same run stays near its working set. A record's tensors are views into a
    block (pickling one copies its block: use ``.clone()`` to keep a single record apart).
    """

    BLOCK_BYTES = 1 << 20

    def __init__(self) -> None:
        # dtype -> (block, its numpy view or None, entries used)
        self._blocks: dict[torch.dtype, tuple[torch.Tensor, np.ndarray | None, int]] = {}

    def copy(self, *tensors: torch.Tensor | np.ndarray | None) -> list[torch.Tensor | None]:
        """Detached CPU copies of ``tensors`` (torch tensors or numpy arrays; None stays None),
        each written into the current block of its dtype through the block's numpy view and
        returned as a torch view of that block.

        Cost per Lanczos record (4 fields, numpy inputs): ~14 us, against ~45 us when the
        fields were packed with one torch ``cat`` and unpacked with ``split`` (torch's
        per-call overhead), and ~10 us for four plain ``.to("cpu", copy=True)`` (fragmenting,
        above). Numpy blocks with ``torch.from_numpy`` views per record were as cheap but
        fragmented the heap just the same (each view brings its own malloc'd storage object):
        2.1 GB again; here every record's tensor is a view of one long-lived block tensor.
        """
        out: list[torch.Tensor | None] = []
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            if isinstance(t, torch.Tensor):
                t = t.detach()
                if t.device.type != "cpu":
                    t = t.cpu()
                dtype, size = t.dtype, t.numel()
            else:
                t = np.asarray(t)
                dtype, size = _TORCH_DTYPE_OF[t.dtype.type], t.size
            entry = self._blocks.get(dtype)
            if entry is None or entry[2] + size > entry[0].numel():
                itemsize = torch.empty(0, dtype=dtype).element_size()
                block = torch.empty(max(self.BLOCK_BYTES // itemsize, size), dtype=dtype)
                entry = (block, block.numpy() if dtype in _NUMPY_SAFE else None, 0)
            block, view, used = entry
            self._blocks[dtype] = (block, view, used + size)
            dest = block[used:used + size]
            if view is not None:
                view[used:used + size] = (t.numpy() if isinstance(t, torch.Tensor) else t).reshape(-1)
            else:
                dest.copy_(torch.as_tensor(t).reshape(-1))
            out.append(dest if t.ndim == 1 else dest.view(tuple(t.shape)))
        return out


class Monitor:
    """Times a solve, emits records to the tracker, and builds the result."""

    def __init__(self, solver: str, v: Validated, tracker: Tracker | None,
                 extras: Mapping[str, Any] | None = None) -> None:
        self.solver = solver
        self.operator = v.operator
        self.B = v.B
        self.k, self.which, self.tol, self.max_iter = v.k, v.which, v.tol, v.max_iter
        self.tracker: Tracker = tracker if tracker is not None else NullTracker()
        self.history: list[IterationRecord] = []
        self._arena = _RecordArena()
        self.units: ProductUnits | None = None  # set by a solver that rescales A (ProductUnits)
        self.stop_reason: str | None = None
        self._t0 = time.perf_counter()
        start_extras = dict(extras or {})
        m_rows, n_cols = v.operator.shape
        if m_rows != n_cols:  # a rectangular (SVD) problem: n is the number of columns
            start_extras.setdefault("shape", f"{m_rows} x {n_cols}")
        self.tracker.on_start(SolveStart(
            solver=solver, n=n_cols, k=v.k, which=v.which, tol=v.tol, max_iter=v.max_iter,
            dtype=str(v.operator.dtype).replace("torch.", ""), device=str(v.operator.device),
            extras=start_extras,
        ))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def n_matvec(self) -> int:
        return self.operator.n_matvec

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def record(self, iteration: int, ritz_values: torch.Tensor | np.ndarray, residual_norms: torch.Tensor | np.ndarray,
               *, estimated: bool, n_converged: int, orthogonality_loss: float | None = None,
               all_ritz_values: torch.Tensor | np.ndarray | None = None,
               ghost_mask: torch.Tensor | np.ndarray | None = None,
               extras: Mapping[str, float] | None = None) -> bool:
        """Emit one record; returns True when the tracker asked to stop. Values and residuals
        are in the solver's units: with ``units`` set they are reported in A's. The fields may be
        torch tensors (any device) or numpy arrays (a solver whose small work is in numpy saves
        the conversions); the record always holds CPU torch tensors."""
        if self.units is not None and self.units.scale != 1.0:
            ritz_values, residual_norms = ritz_values * self.units.scale, residual_norms * self.units.scale
            if all_ritz_values is not None:
                all_ritz_values = all_ritz_values * self.units.scale
        values, residuals, every, ghosts = self._arena.copy(ritz_values, residual_norms, all_ritz_values, ghost_mask)
        record = IterationRecord(
            solver=self.solver, iteration=int(iteration),
            ritz_values=values, residual_norms=residuals,  # type: ignore[arg-type]
            residuals_estimated=bool(estimated),
            orthogonality_loss=None if orthogonality_loss is None else float(orthogonality_loss),
            n_converged=int(n_converged), n_matvec=self.n_matvec, elapsed_s=self.elapsed,
            all_ritz_values=every, ghost_mask=ghosts,
            extras=dict(extras or {}),
        )
        self.history.append(record)
        try:
            self.tracker.on_iteration(record)
        except StopSolve as stop:
            self.stop_reason = stop.reason
            return True
        return False

    def _progress(self, eigenvalues: torch.Tensor, residual_norms: torch.Tensor, converged: torch.Tensor,
                  norm_estimate: float | None = None) -> str:
        """What a MAX_ITER run reached, for a user deciding what to change."""
        done, k = int(converged.sum()), int(converged.numel())
        text = f"{done} of {k} pairs met tol = {self.tol:g} within max_iter = {self.max_iter}"
        if k:
            relative = (residual_norms.detach().cpu().double()
                        / eigenvalues.detach().cpu().double().abs().clamp_min(torch.finfo(torch.float64).tiny))
            worst = float(relative.max())
            text += f" (worst ||r|| / |theta|: {worst:.1e}; raise `max_iter`, loosen `tol` or try another solver)"
        text += "."
        missed = ~converged.detach().cpu().to(torch.bool)
        if k and norm_estimate and bool(missed.any()):
            floor = rounding_note(float(residual_norms.detach().cpu().double()[missed].max()), norm_estimate,
                                  eigenvalues.dtype)
            if floor:
                text += " " + floor
        return text

    def finish(self, *, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor, residual_norms: torch.Tensor,
               converged: torch.Tensor, n_iter: int, status: SolveStatus, message: str = "",
               counts_in_message: bool = False, norm_estimate: float | None = None,
               left_vectors: torch.Tensor | None = None) -> EigenResult:
        """The result; a MAX_ITER message gets how far the run got (``_progress``) unless the
        solver's own ``message`` already counts the pairs (``counts_in_message``).
        ``norm_estimate``: the solver's estimate of ||A|| (in its units), so that the message can
        say when the residuals that missed tol are already at the rounding level (``rounding_note``).
        ``left_vectors`` (m, k): an SVD solver's U; the result is then a ``SingularResult`` whose
        eigenvalues are the singular values and eigenvectors the right vectors V."""
        if self.stop_reason is not None:
            status = SolveStatus.STOPPED
            message = (message + " " if message else "") + f"Reason: {self.stop_reason}."
        if self.units is not None and self.units.scale != 1.0:
            eigenvalues, residual_norms = eigenvalues * self.units.scale, residual_norms * self.units.scale
            norm_estimate = None if norm_estimate is None else norm_estimate * self.units.scale
        if status is SolveStatus.MAX_ITER and not counts_in_message:
            message = (self._progress(eigenvalues, residual_norms, converged, norm_estimate) + " " + message).strip()

        fields = dict(
            eigenvalues=eigenvalues.detach(), eigenvectors=eigenvectors.detach(),
            residual_norms=residual_norms.detach(), converged=converged.detach().to(torch.bool),
            n_iter=int(n_iter), n_matvec=self.n_matvec, elapsed_s=self.elapsed, status=status,
            solver=self.solver, message=message, which=self.which, tol=self.tol, history=tuple(self.history),
        )
        result = (EigenResult(**fields) if left_vectors is None
                  else SingularResult(**fields, left_vectors=left_vectors.detach()))
        try:
            self.tracker.on_finish(result)
        except StopSolve:
            pass
        return result
