"""Spectra of the weights themselves: tensor listing, singular values, empirical spectral density.

A 2-D weight W (m x n) is used as it is; a convolution kernel (out, in, kh, kw, ...)
is reshaped to (out, in * kh * kw), the matrix that multiplies unfolded patches
(the usual "im2col" view). Its top singular values come from

* ``"lanczos"``: any solver of the registry (Lanczos by default) on the Gram operator
  W^T W (or W W^T, whichever is smaller), sigma_i = sqrt(lambda_i). Live-tracked
  like every solve. Note the squaring: an eigenvalue error of eps ||W||^2 is a
  singular value error of about eps ||W||^2 / (2 sigma), so small singular values
  lose accuracy; the top ones (what is asked for) do not.
* ``"randomized"``: randomized subspace iteration on W itself (Halko, Martinsson &
  Tropp 2011, Algorithms 4.4 + 5.1), the registry's ``randomized_svd``: one record per
  power iteration, stopped when every wanted triplet's residual ||W v - sigma u|| <=
  tol * sigma (W^T u - sigma v = 0 by construction).

For small matrices :func:`singular_spectrum` returns every singular value (LAPACK) and
:func:`empirical_spectral_density` the histogram of the eigenvalues of W^T W / m with the
Marchenko-Pastur law of an i.i.d. matrix of the same shape and entry variance as a
reference (Martin & Mahoney 2021 read trained layers against it).

References:
    N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness",
    SIAM Review 53(2), 2011.
    V. A. Marchenko, L. A. Pastur, "Distribution of eigenvalues for some sets of random
    matrices", Mat. Sb. 72(114), 1967.
    C. H. Martin, M. W. Mahoney, "Implicit self-regularization in deep neural networks",
    JMLR 22(165), 2021.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import torch

from explorer.models.loading import ModelInputError
from explorer.operators import LinearOperator
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.tracking import IterationRecord, NullTracker, SolveStart, Tracker

__all__ = [
    "FULL_SPECTRUM_MAX",
    "GramOperator",
    "SingularValues",
    "tensor_table",
    "weight_matrix",
    "matrix_view",
    "top_singular_values",
    "randomized_svd",
    "singular_spectrum",
    "empirical_spectral_density",
    "marchenko_pastur",
    "SingularValueTracker",
    "natural_key",
]

#: Largest min(m, n) for which the full singular spectrum is computed by default.
FULL_SPECTRUM_MAX = 2048


def matrix_view(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The (rows, cols) a tensor of this shape is analysed as, or None (vectors, scalars)."""
    if len(shape) < 2:
        return None
    rows = int(shape[0])
    cols = int(math.prod(shape[1:]))
    return rows, cols


def _kind(name: str, shape: tuple[int, ...]) -> str:
    if len(shape) == 0:
        return "scalar"
    if len(shape) == 1:
        return "vector (bias / norm)"
    if len(shape) == 2:
        return "embedding" if "embed" in name.lower() else "matrix"
    return f"conv kernel ({len(shape) - 2}-D)"


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``layers.10`` after ``layers.2`` (safetensors files do not keep the model's order)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def tensor_table(state_dict: Mapping[str, torch.Tensor]) -> Any:
    """Every tensor with name, shape, dtype, size and the matrix it is analysed as (a pandas DataFrame).

    Rows are in natural name order (``layers.2`` before ``layers.10``).
    """
    import pandas as pd

    rows = []
    for name in sorted(state_dict, key=natural_key):
        tensor = state_dict[name]
        shape = tuple(int(d) for d in tensor.shape)
        view = matrix_view(shape)
        rows.append({
            "name": name,
            "shape": "x".join(map(str, shape)) if shape else "()",
            "dtype": str(tensor.dtype).replace("torch.", ""),
            "numel": int(tensor.numel()),
            "kind": _kind(name, shape),
            "matrix": "" if view is None else f"{view[0]} x {view[1]}",
        })
    return pd.DataFrame(rows, columns=["name", "shape", "dtype", "numel", "kind", "matrix"])


def weight_matrix(tensor: torch.Tensor, name: str = "weight", *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 2-D matrix of a weight: as it is, or a conv kernel reshaped to (out, in * k...).

    Raises:
        ModelInputError: a vector or scalar (bias, norm scale), or a non-numeric tensor.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a tensor, got {type(tensor).__name__}")
    if tensor.ndim < 2:
        raise ModelInputError(f"`{name}` has shape {tuple(tensor.shape)}: a {_kind(name, tuple(tensor.shape))} has no "
                              "singular values; choose a 2-D weight or a conv kernel")
    if tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in (torch.int8, torch.uint8)):
        raise ModelInputError(f"`{name}` has dtype {tensor.dtype}; choose a real floating-point weight")
    if tensor.numel() == 0:
        raise ModelInputError(f"`{name}` is empty (shape {tuple(tensor.shape)})")
    matrix = tensor.detach().reshape(tensor.shape[0], -1).to(dtype)
    if not bool(torch.isfinite(matrix).all()):
        raise ModelInputError(f"`{name}` contains NaN or Inf; the checkpoint is damaged (or training diverged)")
    return matrix


class GramOperator(LinearOperator):
    """W^T W (n x n) or W W^T (m x m), whichever is smaller; symmetric positive semi-definite.

    Its eigenvalues are the squared singular values of W. One matvec is two products with W.
    """

    def __init__(self, matrix: torch.Tensor, *, side: Literal["auto", "right", "left"] = "auto") -> None:
        if matrix.ndim != 2:
            raise ValueError(f"`matrix` must be 2-D, got shape {tuple(matrix.shape)}")
        m, n = matrix.shape
        if side == "auto":
            side = "right" if n <= m else "left"
        size = n if side == "right" else m
        super().__init__((size, size), matrix.dtype, matrix.device, is_symmetric=True)
        self.matrix = matrix
        self.side = side

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        W = self.matrix
        return W.T @ (W @ X) if self.side == "right" else W @ (W.T @ X)

    def _to(self, device: torch.device, dtype: torch.dtype) -> "GramOperator":
        return GramOperator(self.matrix.to(device=device, dtype=dtype), side=self.side)  # type: ignore[arg-type]

    def diagonal(self) -> torch.Tensor:
        W = self.matrix
        return (W * W).sum(0) if self.side == "right" else (W * W).sum(1)

    @property
    def kind(self) -> str:
        return "Gram (matrix-free)"


class SingularValueTracker(NullTracker):
    """Forwards a Gram-operator solve's records to ``inner`` as singular-value records.

    theta (an eigenvalue of W^T W) becomes sigma = sqrt(max(theta, 0)), and the residual
    ||W^T W v - sigma^2 v|| becomes ||W^T u - sigma v|| with u = W v / sigma, which is
    exactly the eigen-residual divided by sigma (and W v - sigma u = 0 by construction).
    """

    def __init__(self, inner: Tracker) -> None:
        self.inner = inner

    def on_start(self, start: SolveStart) -> None:
        self.inner.on_start(start)

    def on_iteration(self, record: IterationRecord) -> None:
        sigma = record.ritz_values.clamp_min(0).sqrt()
        residual = record.residual_norms / sigma.clamp_min(torch.finfo(sigma.dtype).tiny)
        all_values = None if record.all_ritz_values is None else record.all_ritz_values.clamp_min(0).sqrt()
        self.inner.on_iteration(IterationRecord(
            solver=record.solver, iteration=record.iteration, ritz_values=sigma, residual_norms=residual,
            residuals_estimated=record.residuals_estimated, orthogonality_loss=record.orthogonality_loss,
            n_converged=record.n_converged, n_matvec=record.n_matvec, elapsed_s=record.elapsed_s,
            all_ritz_values=all_values, ghost_mask=record.ghost_mask, extras=record.extras))

    def on_finish(self, result: Any) -> None:
        self.inner.on_finish(result)


@dataclass(frozen=True)
class SingularValues:
    """Top singular values of a weight matrix.

    Attributes:
        values: (k,) descending.
        residuals: (k,) max(||W v - s u||, ||W^T u - s v||) per triplet (true residuals).
        converged: (k,) residual <= tol * s.
        method: "lanczos" (registry solver on the Gram operator) or "randomized".
        eigen: the underlying EigenResult for the Gram route (None for randomized).
    """

    values: torch.Tensor
    residuals: torch.Tensor
    converged: torch.Tensor
    method: str
    solver: str
    n_iter: int
    n_matvec: int
    elapsed_s: float
    status: SolveStatus
    message: str = ""
    eigen: EigenResult | None = None
    history: tuple[IterationRecord, ...] = field(default=(), repr=False)

    @property
    def k(self) -> int:
        return int(self.values.numel())


def _triplet_residuals(W: torch.Tensor, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    r1 = torch.linalg.vector_norm(W @ V - U * S, dim=0)
    r2 = torch.linalg.vector_norm(W.T @ U - V * S, dim=0)
    return torch.maximum(r1, r2)


def top_singular_values(matrix: torch.Tensor, k: int, *, method: Literal["lanczos", "randomized"] = "lanczos",
                        solver: str = "lanczos", tol: float = 1e-6, max_iter: int | None = None,
                        seed: int | None = 0, tracker: Tracker | None = None, **solver_kwargs: Any) -> SingularValues:
    """The k largest singular values of a 2-D weight, live-tracked.

    Args:
        matrix: (m, n), e.g. from :func:`weight_matrix`.
        k: how many (1 <= k <= min(m, n)).
        method: ``"lanczos"``: registry solver ``solver`` on W^T W (records carry
            eigenvalues of W^T W, i.e. sigma^2); ``"randomized"``: :func:`randomized_svd`.
        solver: registry name for the Gram route (any symmetric solver).
        tol: relative residual tolerance.
        max_iter: iteration limit (solver's meaning); None: its default.
        seed: random start (a local generator).
        tracker: receives the per-iteration records (for the Lanczos route, wrap it in
            :class:`SingularValueTracker` to see singular values instead of eigenvalues of W^T W).
        solver_kwargs: passed to the registry solver.
    """
    if matrix.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D, got shape {tuple(matrix.shape)}; use weight_matrix() first")
    small = min(matrix.shape)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= small:
        raise ValueError(f"`k` must satisfy 1 <= k <= min(m, n) = {small}, got {k!r}")
    if method == "randomized":
        return randomized_svd(matrix, k, tol=tol, max_iter=max_iter or 50, seed=seed, tracker=tracker)
    if method != "lanczos":
        raise ValueError(f"`method` must be 'lanczos' or 'randomized', got {method!r}")
    from explorer.solvers import solve

    gram = GramOperator(matrix)
    kwargs: dict[str, Any] = {"which": "LA", "tol": tol, "seed": seed, "tracker": tracker, **solver_kwargs}
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    result = solve(solver, gram, k, **kwargs)
    lam = result.eigenvalues.clamp_min(0)
    S = lam.sqrt()
    X = result.eigenvectors
    W = matrix.to(X.dtype)
    if gram.side == "right":
        V = X
        U = (W @ V) / S.clamp_min(torch.finfo(S.dtype).tiny)
    else:
        U = X
        V = (W.T @ U) / S.clamp_min(torch.finfo(S.dtype).tiny)
    residuals = _triplet_residuals(W, U, S, V)
    converged = residuals <= tol * S
    return SingularValues(S, residuals, converged, "lanczos", result.solver, result.n_iter, result.n_matvec,
                          result.elapsed_s, result.status, result.message, result, result.history)


def randomized_svd(matrix: torch.Tensor, k: int, *, oversample: int = 10, tol: float = 1e-6, max_iter: int = 50,
                   seed: int | None = 0, tracker: Tracker | None = None) -> SingularValues:
    """Randomized subspace iteration (Halko et al. 2011, Alg. 4.4 + 5.1) via the registry's ``randomized_svd``.

    ``explorer.solvers.randomized.randomized_svd`` does the work (one record per pass,
    stopping once every ||W v_i - sigma_i u_i|| <= tol * sigma_i, at most ``max_iter``
    power iterations); this wrapper returns the same :class:`SingularValues` as the
    Lanczos route, with both triplet residuals measured on W.
    """
    from explorer.solvers.randomized import randomized_svd as _randomized_svd

    if matrix.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D, got shape {tuple(matrix.shape)}")
    small = min(matrix.shape)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= small:
        raise ValueError(f"`k` must satisfy 1 <= k <= min(m, n) = {small}, got {k!r}")
    result = _randomized_svd(matrix, k, n_oversamples=oversample, n_power_iter=max_iter, tol=tol, seed=seed,
                             tracker=tracker)
    U, S, V = result.U, result.S, result.Vh.T
    residuals = _triplet_residuals(matrix.to(S.dtype), U, S, V)
    converged = residuals <= tol * S.clamp_min(torch.finfo(S.dtype).tiny)
    return SingularValues(S.detach(), residuals.detach(), converged, "randomized", result.solver, result.n_iter,
                          result.n_matvec, result.elapsed_s, result.status, result.message, None, result.history)


def singular_spectrum(matrix: torch.Tensor, *, max_size: int = FULL_SPECTRUM_MAX) -> torch.Tensor:
    """Every singular value (descending) by LAPACK, for min(m, n) <= ``max_size``."""
    if matrix.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D, got shape {tuple(matrix.shape)}")
    if min(matrix.shape) > max_size:
        raise ModelInputError(f"the full singular spectrum of a {matrix.shape[0]} x {matrix.shape[1]} matrix is limited "
                              f"to min(m, n) <= {max_size}; use top_singular_values for the largest ones")
    return torch.linalg.svdvals(matrix)


def marchenko_pastur(x: torch.Tensor, ratio: float, variance: float) -> torch.Tensor:
    """Marchenko-Pastur density of the eigenvalues of (1/N) X^T X for X (N x M) with i.i.d. entries.

    Args:
        x: points.
        ratio: q = M / N in (0, 1].
        variance: entry variance s^2.

    Returns:
        rho(x) = sqrt((x+ - x)(x - x-)) / (2 pi s^2 q x) on [x-, x+], x+- = s^2 (1 +- sqrt q)^2.
    """
    q = float(ratio)
    lo, hi = variance * (1 - math.sqrt(q)) ** 2, variance * (1 + math.sqrt(q)) ** 2
    x = x.double()
    inside = (x > lo) & (x < hi)
    values = torch.zeros_like(x)
    xi = x[inside]
    values[inside] = torch.sqrt((hi - xi) * (xi - lo)) / (2 * math.pi * variance * q * xi)
    return values


def empirical_spectral_density(matrix: torch.Tensor, *, bins: int = 60,
                               max_size: int = FULL_SPECTRUM_MAX) -> dict[str, Any]:
    """Histogram of the eigenvalues of X = W^T W / N (W oriented N x M with N >= M) and the MP reference.

    Returns:
        dict with ``eigenvalues`` (M,), ``edges`` (bins+1,), ``density`` (bins,) (integrates
        to 1), ``mp_x``/``mp_density`` (the Marchenko-Pastur curve for the same shape and
        entry variance), ``ratio`` q = M/N, ``variance``, and ``mp_edge`` (upper edge
        x+; eigenvalues beyond it are what a random matrix would not have).
    """
    W = matrix.double()
    if W.shape[0] < W.shape[1]:
        W = W.T
    N, M = W.shape
    sv = singular_spectrum(W, max_size=max_size)
    eig = (sv * sv / N).flip(0)  # ascending
    variance = float(W.pow(2).mean())
    ratio = M / N
    hist = torch.histogram(eig, bins=int(bins), density=True)
    hi = max(float(eig.max()), variance * (1 + math.sqrt(ratio)) ** 2)
    mp_x = torch.linspace(0, hi * 1.02, 400, dtype=torch.float64)
    return {"eigenvalues": eig, "edges": hist.bin_edges, "density": hist.hist, "mp_x": mp_x,
            "mp_density": marchenko_pastur(mp_x, ratio, variance), "ratio": ratio, "variance": variance,
            "mp_edge": variance * (1 + math.sqrt(ratio)) ** 2}
