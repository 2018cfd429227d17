"""Shifted inverses ``(A - sigma B)^-1`` from real factorizations, their inertia, and the
shift-invert operators built on them.

A spectral transformation replaces ``A x = lambda B x`` by ``(A - sigma B)^-1 B x = theta x``
with ``theta = 1 / (lambda - sigma)`` (ARPACK's mode 3, Ericsson & Ruhe 1980): the eigenvalues
nearest sigma become the largest in magnitude, well separated, and a Krylov method finds them
in a few tens of steps where the original problem takes thousands. Everything hinges on
applying ``M^-1 = (A - sigma B)^-1`` to vectors; this module builds it:

* **sparse, CPU** (scipy CSR): SuperLU (``scipy.sparse.linalg.splu``).

  - ``"ldl"`` (the default): SuperLU in symmetric mode, minimum-degree ordering on the
    structure of M + M^T, no off-diagonal pivoting (``diag_pivot_thresh=0``,
    ``SymmetricMode=True``). With the same row and column permutation P this is
    ``P M P^T = L U`` with L unit lower triangular, and for symmetric M the unique such
    factorization is ``U = D L^T``: an LDL^T. Its use here is twofold: the solves, and the
    **inertia** of M (Sylvester's law of inertia: ``D`` has as many negative entries as M
    has negative eigenvalues, i.e. as the pencil has eigenvalues below sigma). scipy has no
    public sparse LDL^T, and the pivot signs of an LU with partial (row) pivoting say
    nothing about inertia in general; this one is a congruence, so they do. It also has half
    the fill of ``splu``'s default COLAMD ordering on the 2-D Laplacian (nnz(L+U) 5.6e6
    against 1.0-1.3e7 at n = 10^5). Without pivoting it can be unstable on indefinite
    matrices, so every factorization is checked: the row permutation must equal the column
    permutation (SuperLU leaves the diagonal only for an exactly zero pivot), and the
    normwise backward error of a probe solve, ``||M x - b|| / (||M||_1 ||x|| + ||b||)``, must
    stay below ``BACKWARD_ERROR_LIMIT`` eps; otherwise ``method="auto"`` falls back to
    ``"lu"`` for the solves (and reports no inertia).
  - ``"lu"``: ``splu`` with its defaults (COLAMD, partial pivoting), what
    ``scipy.sparse.linalg.eigsh(sigma=...)`` uses; stable, no inertia.

  scikit-sparse's CHOLMOD would give a supernodal LDL^T, but it has no wheel on the
  package index here (it builds only against a system SuiteSparse), and its LDL^T does not
  pivot either, so it would add no certainty; it is not used.
* **sparse on a GPU**: the same SuperLU factorization of the host copy; each solve moves the
  block to the host and back (torch has no sparse direct solver).
* **dense, any device** (torch): ``torch.linalg.cholesky_ex`` when M is positive definite
  (sigma below the spectrum: inertia (0, 0, n) for free), else ``torch.linalg.ldl_factor_ex``
  (Bunch-Kaufman LDL^T, LAPACK ``sytrf`` / cuSOLVER; inertia from the 1x1 and 2x2 blocks
  of D). ``"lu"`` (``torch.linalg.lu_factor_ex``) is there for comparison.
* **matrix-free**: an inner Krylov solve per column, ``"minres"`` (Paige & Saunders 1975;
  symmetric indefinite M, any sigma) or ``"cg"`` (Hestenes & Stiefel 1952; only for a
  positive definite M, sigma below the spectrum), both scipy's, with their own relative
  tolerance ``inner_tol`` and iteration limit. Every product with A inside them is counted
  (``inner_matvecs``); no inertia.

A shift at an eigenvalue makes M singular. Exact zero pivots are reported by the
factorizations; a shift equal to an eigenvalue only to rounding leaves a pivot of rounding
size instead, so every factorization also estimates the smallest singular value of M by two
steps of inverse iteration from a seeded random vector (``s_min ~ 1 / ||M^-2 b||``, an upper
bound that is sharp after two steps unless b is nearly orthogonal to the nearest eigenvector)
and refuses a shift with ``s_min <= SINGULAR_LIMIT eps ||M||_1`` (:class:`SingularShiftError`,
with a suggestion). A shift merely *close* to an eigenvalue is fine: that is what shift-invert
wants, and inverse iteration is accurate however small ``lambda - sigma`` is (Peters &
Wilkinson 1979).

References:
    T. Ericsson and A. Ruhe, The spectral transformation Lanczos method for the numerical
    solution of large sparse generalized symmetric eigenvalue problems, Math. Comp. 35 (1980).
    R. G. Grimes, J. G. Lewis and H. D. Simon, A shifted block Lanczos algorithm for solving
    sparse symmetric generalized eigenproblems, SIAM J. Matrix Anal. Appl. 15 (1994): inertia
    from the LDL^T of the shifted matrix, to count and to slice.
    X. S. Li, An overview of SuperLU, ACM TOMS 31 (2005) (symmetric mode).
    J. R. Bunch and L. Kaufman, Some stable methods for calculating inertia and solving
    symmetric linear systems, Math. Comp. 31 (1977).
    C. C. Paige and M. A. Saunders, Solution of sparse indefinite systems of linear equations,
    SIAM J. Numer. Anal. 12 (1975).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

from explorer.operators.base import LinearOperator
from explorer.operators.concrete import CountedOperator, DenseOperator, ShiftedOperator, SparseOperator, \
    SymmetrizedOperator

__all__ = [
    "FACTORIZATIONS",
    "Inertia",
    "SingularShiftError",
    "ShiftedInverse",
    "SymmetricFactor",
    "ShiftInvertOperator",
    "assembled_matrix",
    "shifted_inverse",
    "symmetric_factor",
]

FACTORIZATIONS = ("auto", "ldl", "lu", "cholesky", "minres", "cg")
# A factorization whose probe solve has a normwise backward error above this many eps is
# treated as unstable (an LDL^T without pivoting with large growth): "auto" falls back to LU.
BACKWARD_ERROR_LIMIT = 1e4
# A shift whose shifted matrix has a smallest singular value below this many eps ||M||_1 is an
# eigenvalue to rounding: the factorization is that of a singular matrix.
SINGULAR_LIMIT = 100.0


@dataclass(frozen=True)
class Inertia:
    """Signs of the eigenvalues of the shifted matrix ``A - sigma B`` (Sylvester's law of inertia):
    ``negative`` eigenvalues of the pencil lie below sigma, ``positive`` above."""

    negative: int
    zero: int
    positive: int


class SingularShiftError(ValueError):
    """``A - sigma B`` is singular to rounding: sigma is (numerically) an eigenvalue."""

    def __init__(self, sigma: float, detail: str, scale: float, suggestion: str | None = None) -> None:
        step = max(abs(sigma), scale) * 1e-6
        if suggestion is None:
            suggestion = (f"Move sigma a little, e.g. sigma = {sigma + step:.10g}: the eigenvalue at the old sigma is "
                          "then the first one found.")
        super().__init__(
            f"sigma = {sigma:.17g} is an eigenvalue of the problem to rounding: A - sigma B is singular "
            f"({detail}), so its inverse is not defined. {suggestion}")
        self.sigma, self.scale, self.detail, self.step = sigma, scale, detail, step


# ----------------------------------------------------------------------------------------
# The assembled matrix behind an operator
# ----------------------------------------------------------------------------------------
def assembled_matrix(operator: LinearOperator) -> sp.csr_matrix | torch.Tensor | None:
    """The matrix behind ``operator``: scipy CSR (sparse operators), a dense torch tensor on the
    operator's device (dense ones), or None (matrix-free). Looks through the wrappers that keep
    the matrix (counting views, shifts, symmetrization); a copy where they change it."""
    if isinstance(operator, SparseOperator):
        return operator.to_scipy()
    if isinstance(operator, DenseOperator):
        return operator.matrix
    if isinstance(operator, CountedOperator):
        return assembled_matrix(operator.base)
    if isinstance(operator, ShiftedOperator):
        inner = assembled_matrix(operator.base)
        if inner is None:
            return None
        if isinstance(inner, torch.Tensor):
            return inner - operator.sigma * torch.eye(inner.shape[0], dtype=inner.dtype, device=inner.device)
        return (inner - operator.sigma * sp.identity(inner.shape[0], dtype=inner.dtype, format="csr")).tocsr()
    if isinstance(operator, SymmetrizedOperator):
        inner = assembled_matrix(operator.base)
        if inner is None:
            return None
        return 0.5 * (inner + inner.T) if isinstance(inner, torch.Tensor) else (0.5 * (inner + inner.T)).tocsr()
    return None


def _np_dtype(dtype: torch.dtype) -> type:
    return np.float32 if dtype == torch.float32 else np.float64


def _shifted_matrix(A: Any, sigma: float, B: Any, dtype: torch.dtype) -> Any:
    """``A - sigma B`` from assembled parts (B: None, scipy or torch): scipy CSC when both are
    sparse, else a dense torch tensor on A's device."""
    if isinstance(A, torch.Tensor) or isinstance(B, torch.Tensor):
        device = A.device if isinstance(A, torch.Tensor) else B.device
        Ad = A if isinstance(A, torch.Tensor) else torch.from_numpy(A.toarray()).to(device)
        Ad = Ad.to(dtype=dtype)
        if B is None:
            M = Ad - sigma * torch.eye(Ad.shape[0], dtype=dtype, device=device)
        else:
            Bd = B if isinstance(B, torch.Tensor) else torch.from_numpy(B.toarray()).to(device)
            M = Ad - sigma * Bd.to(device=device, dtype=dtype)
        return 0.5 * (M + M.T)
    np_dtype = _np_dtype(dtype)
    Bs = sp.identity(A.shape[0], dtype=np_dtype, format="csc") if B is None else B
    M = (A.astype(np_dtype) - sigma * Bs.astype(np_dtype)).tocsc()
    M.sum_duplicates()
    return M


# ----------------------------------------------------------------------------------------
# Shifted inverses
# ----------------------------------------------------------------------------------------
class ShiftedInverse:
    """``X -> (A - sigma B)^-1 X`` for (n,) or (n, b) torch tensors, with what it cost.

    Attributes:
        sigma: the shift.
        method: "ldl", "lu", "cholesky", "minres" or "cg".
        description: one line for people (library, fill, time).
        factor_seconds: wall time of the factorization (and of its checks).
        inertia: an :class:`Inertia` where the factorization gives one (LDL^T, Cholesky), else None.
        backward_error: normwise backward error of the probe solve (factorizations), else None.
        n_solve: columns solved so far (the checks included).
        inner_matvecs: products with A (and B) inside the Krylov solves (matrix-free only).
        inner_failures: Krylov solves that stopped before ``inner_tol``.
        smallest_singular_value: the estimate of ``s_min(A - sigma B)`` (factorizations).
        norm_estimate: ``||A - sigma B||_1`` (assembled) or an estimate (matrix-free).
    """

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device, sigma: float, method: str) -> None:
        self.n, self.dtype, self.device = n, dtype, torch.device(device)
        self.sigma, self.method = float(sigma), method
        self.description = method
        self.factor_seconds = 0.0
        self.inertia: Inertia | None = None
        self.backward_error: float | None = None
        self.smallest_singular_value: float | None = None
        self.norm_estimate = math.nan
        self.n_solve = 0
        self.inner_matvecs = 0
        self.inner_failures = 0
        self.probe_residual = math.nan

    def solve(self, X: torch.Tensor) -> torch.Tensor:
        """``(A - sigma B)^-1 X`` (one column = one solve)."""
        vector = X.ndim == 1
        X2 = X.unsqueeze(1) if vector else X
        self.n_solve += X2.shape[1]
        Y = self._solve(X2)
        return Y.squeeze(1) if vector else Y

    def _solve(self, X: torch.Tensor) -> torch.Tensor:  # (n, b) -> (n, b)
        raise NotImplementedError

    def _check(self, M_apply: Any, norm: float, seed: int, level: float | None = None) -> None:
        """Backward error of one probe solve and the s_min estimate (two inverse-iteration steps);
        ``level``: the relative accuracy of the solves (eps for a factorization)."""
        eps = torch.finfo(self.dtype).eps
        level = eps if level is None else level
        generator = torch.Generator().manual_seed(seed)
        b = torch.randn(self.n, 1, generator=generator, dtype=torch.float64).to(self.device, self.dtype)
        b = b / torch.linalg.vector_norm(b)
        x1 = self.solve(b)
        if not bool(torch.isfinite(x1).all()):
            raise SingularShiftError(self.sigma, "the solve returned Inf or NaN", norm)
        r = M_apply(x1) - b
        self.probe_residual = float(torch.linalg.vector_norm(r))  # relative: ||b|| = 1
        x1_norm = float(torch.linalg.vector_norm(x1))
        self.backward_error = float(torch.linalg.vector_norm(r)) / (norm * x1_norm + 1.0)
        x2 = self.solve(x1 / x1_norm)
        x2_norm = float(torch.linalg.vector_norm(x2))
        s_min = 1.0 / x2_norm if x2_norm > 0 and math.isfinite(x2_norm) else 0.0
        self.smallest_singular_value = s_min
        if s_min <= SINGULAR_LIMIT * level * norm:
            what = "" if level == eps else f", below what solves to rtol {level:.0e} can resolve"
            raise SingularShiftError(self.sigma, f"its smallest singular value is about {s_min:.1e}, "
                                                 f"{s_min / norm:.1e} of ||A - sigma B|| = {norm:.3g}{what}", norm)
        self.backward_error = self.backward_error / eps  # in units of eps from here on

    def describe(self) -> str:
        return self.description

    @property
    def stable(self) -> bool:
        """Whether the solves (and the inertia) can be trusted; see ``_SuperLUInverse.stable``."""
        return True


class _SuperLUInverse(ShiftedInverse):
    def __init__(self, M: sp.csc_matrix, sigma: float, dtype: torch.dtype, device: torch.device, *,
                 symmetric: bool, seed: int) -> None:
        super().__init__(M.shape[0], dtype, device, sigma, "ldl" if symmetric else "lu")
        t0 = time.perf_counter()
        self.norm_estimate = float(abs(M).sum(axis=0).max()) if M.nnz else 0.0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
                if symmetric:
                    self.lu = sla.splu(M, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                       options={"SymmetricMode": True})
                else:
                    self.lu = sla.splu(M)
        except RuntimeError as err:  # "Factor is exactly singular"
            raise SingularShiftError(sigma, f"SuperLU: {err}", self.norm_estimate) from None
        self.symmetric_pivots = bool(np.array_equal(self.lu.perm_r, self.lu.perm_c))
        fill = self.lu.L.nnz + self.lu.U.nnz
        if symmetric and self.symmetric_pivots:
            d = self.lu.U.diagonal()
            negative, zero = int((d < 0).sum()), int((d == 0).sum())
            self.inertia = Inertia(negative, zero, self.n - negative - zero)
        self._M = M
        self._check(self._apply_M, self.norm_estimate, seed)
        self.factor_seconds = time.perf_counter() - t0
        kind = ("sparse LDL^T (SuperLU symmetric mode, minimum degree on M + M^T, no pivoting)" if symmetric
                else "sparse LU (SuperLU, COLAMD, partial pivoting)")
        self.description = f"{kind}: nnz(L+U) = {fill:.3g}, {self.factor_seconds:.2f} s"

    def _apply_M(self, X: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self._M @ X.cpu().numpy())).to(self.device)

    def _solve(self, X: torch.Tensor) -> torch.Tensor:
        rhs = np.asarray(X.detach().cpu().numpy(), dtype=self.lu.L.dtype)
        return torch.from_numpy(np.asarray(self.lu.solve(rhs))).to(device=self.device, dtype=self.dtype)

    @property
    def stable(self) -> bool:
        """The symmetric factorization kept its diagonal pivots and solved with a small backward error."""
        return self.symmetric_pivots and (self.backward_error or 0.0) <= BACKWARD_ERROR_LIMIT


def _dense_inertia(LD: torch.Tensor, pivots: torch.Tensor) -> Inertia:
    """Inertia of D in LAPACK's Bunch-Kaufman ``sytrf`` (lower) storage: 1x1 blocks where
    ``pivots[i] > 0``, a 2x2 block at (i, i+1) where ``pivots[i] = pivots[i+1] < 0``."""
    d = LD.diagonal().double().cpu().numpy()
    sub = LD.diagonal(-1).double().cpu().numpy()
    piv = pivots.cpu().numpy()
    negative = zero = 0
    i, n = 0, d.size
    while i < n:
        if piv[i] < 0 and i + 1 < n:
            det = d[i] * d[i + 1] - sub[i] ** 2
            if det < 0:
                negative += 1
            elif det == 0:
                zero += 1
                negative += int(d[i] + d[i + 1] < 0)
            else:
                negative += 2 if d[i] < 0 else 0
            i += 2
        else:
            negative += int(d[i] < 0)
            zero += int(d[i] == 0)
            i += 1
    return Inertia(negative, zero, n - negative - zero)


class _DenseInverse(ShiftedInverse):
    def __init__(self, M: torch.Tensor, sigma: float, method: str, *, seed: int) -> None:
        super().__init__(M.shape[0], M.dtype, M.device, sigma, method)
        t0 = time.perf_counter()
        self.norm_estimate = float(torch.linalg.matrix_norm(M, ord=1))
        self._M = M
        if method in ("cholesky", "auto"):
            L, info = torch.linalg.cholesky_ex(M)
            if int(info) == 0:
                self.method, self._L = "cholesky", L
                self.inertia = Inertia(0, 0, self.n)
            elif method == "cholesky":
                raise ValueError(f"factorization='cholesky' needs A - sigma B positive definite (sigma below the "
                                 f"spectrum); at sigma = {sigma:g} it is not (leading minor {int(info)} <= 0). Use "
                                 "'ldl' or 'auto'")
            else:
                method = "ldl"
        if method == "ldl":
            LD, pivots, info = torch.linalg.ldl_factor_ex(M)
            if int(info) > 0:
                raise SingularShiftError(sigma, f"LDL^T (Bunch-Kaufman): D({int(info)}, {int(info)}) is exactly 0",
                                         self.norm_estimate)
            self.method, self._LD, self._pivots = "ldl", LD, pivots
            self.inertia = _dense_inertia(LD, pivots)
        elif method == "lu":
            LU, pivots, info = torch.linalg.lu_factor_ex(M)
            if int(info) > 0:
                raise SingularShiftError(sigma, f"LU: U({int(info)}, {int(info)}) is exactly 0", self.norm_estimate)
            self._LU, self._pivots = LU, pivots
        self._check(lambda X: self._M @ X, self.norm_estimate, seed)
        self.factor_seconds = time.perf_counter() - t0
        names = {"cholesky": "dense Cholesky (torch.linalg.cholesky)",
                 "ldl": "dense LDL^T (torch.linalg.ldl_factor, Bunch-Kaufman)",
                 "lu": "dense LU (torch.linalg.lu_factor, partial pivoting)"}
        self.description = f"{names[self.method]} on {self.device.type}, n = {self.n}, {self.factor_seconds:.2f} s"

    def _solve(self, X: torch.Tensor) -> torch.Tensor:
        X = X.to(device=self.device, dtype=self.dtype)
        if self.method == "cholesky":
            return torch.cholesky_solve(X, self._L)
        if self.method == "ldl":
            return torch.linalg.ldl_solve(self._LD, self._pivots, X)
        return torch.linalg.lu_solve(self._LU, self._pivots, X)


class _KrylovInverse(ShiftedInverse):
    """One MINRES or CG solve per column on the matrix-free ``A - sigma B`` (scipy's, on host
    numpy vectors: for an operator on a GPU each product moves one vector each way)."""

    def __init__(self, A: LinearOperator, sigma: float, B: LinearOperator | None, method: str, *,
                 inner_tol: float, inner_max_iter: int, seed: int) -> None:
        super().__init__(A.shape[0], A.dtype, A.device, sigma, method)
        t0 = time.perf_counter()
        self.A, self.B, self.inner_tol, self.inner_max_iter = A, B, float(inner_tol), int(inner_max_iter)
        # The Krylov recurrences run in float64 whatever the operator's dtype: in float32 scipy's
        # MINRES drifted from its true residual (1.4e-3 against rtol 1.2e-5 on a 1-D Laplacian
        # with cond 180); only the products are in the operator's dtype.
        np_dtype = np.float64

        def apply(x: np.ndarray) -> np.ndarray:
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np_dtype).reshape(-1)).to(A.device, A.dtype)
            self.inner_matvecs += 1
            y = A.matvec(xt)
            if B is not None:
                y = y - self.sigma * B.matvec(xt)
            elif method == "cg":
                y = y - self.sigma * xt
            return y.detach().cpu().double().numpy()

        self._op = sla.LinearOperator((self.n, self.n), matvec=apply, dtype=np_dtype)
        self._minres_shift = self.sigma if (method == "minres" and B is None) else 0.0
        # ||M|| from a few power steps on the matrix-free operator (only to scale the checks)
        generator = torch.Generator().manual_seed(seed + 1)
        v = torch.randn(self.n, generator=generator, dtype=torch.float64).numpy().astype(np_dtype)
        norm = 0.0
        for _ in range(3):
            w = self._op @ (v / np.linalg.norm(v)) - self._minres_shift * (v / np.linalg.norm(v))
            norm, v = float(np.linalg.norm(w)), w
        self.norm_estimate = norm
        self._check(self._apply_M, max(norm, torch.finfo(self.dtype).tiny), seed)
        self.factor_seconds = time.perf_counter() - t0
        name = "MINRES" if method == "minres" else "CG"
        self.description = (f"matrix-free: one {name} solve per vector (scipy.sparse.linalg.{method}, "
                            f"rtol {self.inner_tol:.0e}, at most {self.inner_max_iter} iterations)")

    def _apply_M(self, X: torch.Tensor) -> torch.Tensor:
        cols = [self._op @ X[:, j].cpu().double().numpy() - self._minres_shift * X[:, j].cpu().double().numpy()
                for j in range(X.shape[1])]
        return torch.from_numpy(np.stack(cols, axis=1)).to(self.device, self.dtype)

    def _solve(self, X: torch.Tensor) -> torch.Tensor:
        out = []
        for j in range(X.shape[1]):
            b = X[:, j].detach().cpu().double().numpy()
            if self.method == "minres":
                x, info = sla.minres(self._op, b, rtol=self.inner_tol, shift=self._minres_shift,
                                     maxiter=self.inner_max_iter)
            else:
                x, info = sla.cg(self._op, b, rtol=self.inner_tol, maxiter=self.inner_max_iter)
            if info != 0:
                self.inner_failures += 1
            out.append(np.asarray(x))
        return torch.from_numpy(np.stack(out, axis=1)).to(device=self.device, dtype=self.dtype)

    def _check(self, M_apply: Any, norm: float, seed: int, level: float | None = None) -> None:
        failures = self.inner_failures
        super()._check(M_apply, norm, seed, level=self.inner_tol)
        if self.probe_residual > SINGULAR_LIMIT * self.inner_tol:
            # MINRES on a singular M returns a least-squares solution and reports success (scipy's info 0)
            raise SingularShiftError(self.sigma, f"{self.method.upper()} solves it only in the least-squares sense: "
                                                 f"relative residual {self.probe_residual:.1e} against rtol "
                                                 f"{self.inner_tol:.0e}", norm)
        if self.inner_failures > failures:
            raise ValueError(
                f"the inner {self.method.upper()} solve with A - sigma B did not reach rtol = {self.inner_tol:.0e} "
                f"within {self.inner_max_iter} iterations at sigma = {self.sigma:g}: the shifted operator is too badly "
                "conditioned (sigma at or very near an eigenvalue) or the limit too low; move sigma, raise "
                "`inner_max_iter`" + (" or use 'minres' (CG needs sigma below the spectrum)" if self.method == "cg"
                                      else ""))


def shifted_inverse(operator: LinearOperator, sigma: float, B: LinearOperator | None = None, *,
                    method: str = "auto", inner_tol: float | None = None, inner_max_iter: int | None = None,
                    seed: int = 0) -> ShiftedInverse:
    """``(A - sigma B)^-1`` for ``operator`` A (and B, symmetric positive definite, or None = I).

    Args:
        operator, B: explorer operators (sparse, dense or matrix-free).
        sigma: the shift (a finite real).
        method: "auto" (sparse: "ldl", falling back to "lu" where the no-pivot LDL^T is
            unstable; dense: "cholesky" where ``A - sigma B`` is positive definite, else "ldl";
            matrix-free: "minres"), or one of "ldl", "lu", "cholesky" (dense only), "minres",
            "cg" (matrix-free, or forced on an assembled matrix).
        inner_tol: relative residual of each Krylov solve (default ``max(1e-10, 100 eps)``).
        inner_max_iter: iterations per Krylov solve (default ``min(10 n, 20000)``).
        seed: of the probe vectors of the checks.

    Raises:
        SingularShiftError: sigma is an eigenvalue to rounding.
        ValueError: unknown method, one that does not apply here, a failing inner solve.
    """
    if method not in FACTORIZATIONS:
        raise ValueError(f"`factorization` must be one of {list(FACTORIZATIONS)}, got {method!r}; 'auto' picks "
                         "an LDL^T for sparse and dense matrices and MINRES for matrix-free operators")
    if not (isinstance(sigma, (int, float, np.floating, np.integer)) and not isinstance(sigma, bool)
            and math.isfinite(float(sigma))):
        raise ValueError(f"`sigma` must be a finite real number, got {sigma!r}")
    sigma = float(sigma)
    A = assembled_matrix(operator)
    Bm = None if B is None else assembled_matrix(B)
    n, dtype = operator.shape[0], operator.dtype
    if method in ("minres", "cg") or A is None or (B is not None and Bm is None):
        if method in ("ldl", "lu", "cholesky"):
            raise ValueError(f"factorization={method!r} needs an assembled matrix, but the operator "
                             f"{'B ' if A is not None else ''}is matrix-free ({operator.kind}); use 'minres' (any "
                             "sigma) or 'cg' (sigma below the spectrum), or pass the matrix itself")
        eps = torch.finfo(dtype).eps
        return _KrylovInverse(operator, sigma, B, "minres" if method == "auto" else method,
                              inner_tol=max(1e-10, 100 * eps) if inner_tol is None else float(inner_tol),
                              inner_max_iter=min(10 * n, 20000) if inner_max_iter is None else int(inner_max_iter),
                              seed=seed)
    M = _shifted_matrix(A, sigma, Bm, dtype)
    if isinstance(M, torch.Tensor):
        return _DenseInverse(M, sigma, method, seed=seed)
    if method == "cholesky":
        raise ValueError("factorization='cholesky' is for dense matrices (torch.linalg.cholesky); for a sparse "
                         "matrix use 'ldl' (which also gives the inertia) or 'lu'")
    if method == "lu":
        return _SuperLUInverse(M, sigma, dtype, operator.device, symmetric=False, seed=seed)
    inverse = _SuperLUInverse(M, sigma, dtype, operator.device, symmetric=True, seed=seed)
    if method == "auto" and not inverse.stable:
        fallback = _SuperLUInverse(M, sigma, dtype, operator.device, symmetric=False, seed=seed)
        fallback.description += (f" (the LDL^T without pivoting was unstable here: "
                                 f"{'off-diagonal pivots' if not inverse.symmetric_pivots else ''}"
                                 f"{'' if not inverse.symmetric_pivots else f'backward error {inverse.backward_error:.1e} eps'})")
        fallback.n_solve += inverse.n_solve
        return fallback
    return inverse


# ----------------------------------------------------------------------------------------
# B = G G^T, for the symmetric form of the generalized shift-invert operator
# ----------------------------------------------------------------------------------------
class SymmetricFactor:
    """``B = G G^T`` with G lower triangular up to a permutation: ``apply(X) = G X``,
    ``apply_t(X) = G^T X``. Dense: Cholesky (``torch.linalg.cholesky``). Sparse: SuperLU in
    symmetric mode, ``P B P^T = L D L^T`` (B is positive definite, so no pivot is ever
    needed and the factorization is stable), ``G = P^T L D^(1/2)``."""

    def __init__(self, B: Any, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype, self.device = dtype, torch.device(device)
        if isinstance(B, torch.Tensor):
            Bd = B.to(dtype=dtype)
            L, info = torch.linalg.cholesky_ex(0.5 * (Bd + Bd.T))
            if int(info) != 0:
                raise ValueError(f"B must be symmetric positive definite, but its Cholesky factorization fails at "
                                 f"column {int(info)}")
            self._L, self._sparse = L, False
            return
        np_dtype = _np_dtype(dtype)
        Bc = sp.csc_matrix(B, dtype=np_dtype)
        try:
            lu = sla.splu(Bc, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        except RuntimeError as err:
            raise ValueError(f"B must be symmetric positive definite, but it is singular ({err})") from None
        d = lu.U.diagonal()
        if not np.array_equal(lu.perm_r, lu.perm_c) or not bool(np.all(d > 0)):
            raise ValueError("B must be symmetric positive definite, but its LDL^T has a pivot <= 0")
        self._sparse = True
        self._Ls = sp.csr_matrix(lu.L)
        self._LsT = sp.csr_matrix(lu.L.T)
        self._sqrt_d = np.sqrt(d).astype(np_dtype)
        self._p = lu.perm_r  # P x: (P x)[perm_r[i]] = x[i]

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """``G X`` for (n, b)."""
        if not self._sparse:
            return self._L @ X
        Z = self._Ls @ (self._sqrt_d[:, None] * X.detach().cpu().numpy())  # L D^1/2 X, in the permuted order
        out = Z[self._p]  # P^T Z
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=self.device, dtype=self.dtype)

    def apply_t(self, X: torch.Tensor) -> torch.Tensor:
        """``G^T X`` for (n, b)."""
        if not self._sparse:
            return self._L.T @ X
        PX = np.empty_like(X.detach().cpu().numpy())
        PX[self._p] = X.detach().cpu().numpy()  # P X
        out = self._sqrt_d[:, None] * (self._LsT @ PX)
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=self.device, dtype=self.dtype)


def symmetric_factor(B: LinearOperator) -> SymmetricFactor:
    """``B = G G^T`` for an assembled B (raises ValueError for a matrix-free one: apply the
    pencil form instead, as LOBPCG does)."""
    Bm = assembled_matrix(B)
    if Bm is None:
        raise ValueError("Lanczos with sigma and a matrix-free B needs B = G G^T, which a matrix-free B cannot give; "
                         "pass B as a matrix, or use `lobpcg` with sigma (it needs only products with B)")
    return SymmetricFactor(Bm, B.dtype, B.device)


# ----------------------------------------------------------------------------------------
# The transformed operators
# ----------------------------------------------------------------------------------------
class ShiftInvertOperator(LinearOperator):
    """A shift-invert operator on a :class:`ShiftedInverse` ``M^-1 = (A - sigma B)^-1``.

    ``form``:
        * ``"op"``: ``M^-1 B`` (ARPACK mode 3's OP; not symmetric when B is given);
        * ``"symmetric"``: ``M^-1`` without B, ``G^T M^-1 G`` with ``B = G G^T`` (``factor``):
          symmetric, the same eigenvalues ``theta = 1 / (lambda - sigma)``, eigenvectors
          ``y = G^T x`` (for Lanczos);
        * ``"pencil"``: ``B M^-1 B``, the left-hand side of the symmetric-definite pencil
          ``(B M^-1 B) x = theta B x`` (the same x and theta; for LOBPCG, which takes B).
    One column is one matvec of this operator and one solve.
    """

    def __init__(self, inverse: ShiftedInverse, *, B: LinearOperator | None = None, form: str = "symmetric",
                 factor: SymmetricFactor | None = None) -> None:
        if form not in ("op", "symmetric", "pencil"):
            raise ValueError(f"unknown shift-invert form {form!r}")
        if form == "symmetric" and B is not None and factor is None:
            raise ValueError("the symmetric form with B needs its factor B = G G^T (symmetric_factor(B))")
        if form == "pencil" and B is None:
            form = "symmetric"
        super().__init__((inverse.n, inverse.n), inverse.dtype, inverse.device,
                         is_symmetric=not (form == "op" and B is not None))
        self.inverse, self.B, self.form, self.factor = inverse, B, form, factor

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        if self.B is None:
            return self.inverse.solve(X)
        if self.form == "op":
            return self.inverse.solve(self.B.matmat(X))
        if self.form == "pencil":
            return self.B.matmat(self.inverse.solve(self.B.matmat(X)))
        assert self.factor is not None
        return self.factor.apply_t(self.inverse.solve(self.factor.apply(X)))

    @property
    def kind(self) -> str:
        return "shift-invert"
