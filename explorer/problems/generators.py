"""Problems with known spectra: the tests' fixtures and the app's "Generate" menu.

Every generator returns a :class:`Problem`: an operator (and ``B`` for a generalized
pair) together with *all* n exact eigenvalues, ascending, in float64 on the CPU.
"Exact" means one of

* closed form: the Dirichlet Laplacians (sums of ``2 - 2 cos(i pi / (N + 1))``), the
  Mikota pair (``1, 4, ..., n^2``), a diagonal matrix (its entries);
* prescribed: ``A = Q diag(lam) Q^T`` with a Haar-random orthogonal ``Q``; the
  assembled matrix differs from the exact one by rounding, so its eigenvalues are
  within ``||E||_2 <= ~n eps ||A||`` of ``lam`` (Weyl's inequality);
* dense eigh: random Wishart and graph-Laplacian matrices have no closed form, so
  their eigenvalues come from ``torch.linalg.eigvalsh`` in float64 (backward stable:
  within ``~n eps ||A||``). Above ``MAX_EIGVALSH_N`` they are ``None``.

Operators are built in float64 and then cast to ``dtype``; the eigenvalues always
describe the float64 matrix, so a float32 operator is off by its own rounding
(``<= eps32 ||A||_F``), which tests must allow for.

Randomness comes only from a local ``torch.Generator`` / ``numpy.random.Generator``
built from ``seed``; the global RNGs are never read or seeded.

Example::

    from explorer import problems
    problem = problems.laplacian_2d(30)
    problem.reference(4, "LA")   # the 4 largest exact eigenvalues, descending
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from explorer.operators import SUPPORTED_DTYPES, DenseOperator, LinearOperator, SparseOperator
from explorer.solvers._common import WHICH, check_int, is_real_number, select_order
from explorer.solvers.registry import ParamSpec

__all__ = [
    "Problem",
    "GeneratorSpec",
    "GENERATORS",
    "SPECTRA",
    "MAX_DENSE_N",
    "MAX_SPARSE_N",
    "MAX_EIGVALSH_N",
    "generate",
    "laplacian_1d",
    "laplacian_2d",
    "laplacian_3d",
    "diagonal",
    "prescribed_spectrum",
    "wishart",
    "mikota_pair",
    "random_graph_laplacian",
    "prescribed_singular_values",
    "gradient_1d",
    "gradient_2d",
]

#: Largest n for a dense generator: a float64 n x n matrix is 3.2 GB at n = 20000, and
#: building it holds ~4 such copies (Gaussian, Q, Q diag(lam), A).
MAX_DENSE_N = 20_000
#: Largest n for a sparse generator (a 3-D Laplacian of this size has ~14 M nonzeros).
MAX_SPARSE_N = 2_000_000
#: Largest n whose eigenvalues are computed by dense eigvalsh (O(n^3): a few seconds at 4000).
MAX_EIGVALSH_N = 4000
#: Largest expected number of edges of a random graph (each edge is 2 stored nonzeros).
MAX_GRAPH_EDGES = 20_000_000

SPECTRA = ("linear", "geometric", "gap", "cluster", "repeated")
# Where the bulk of the "cluster" and "repeated" spectra ends: low + _BULK_TOP * (high - low),
# leaving a relative gap of ~1/2 between the bulk and the top group.
_BULK_TOP = 0.5


# --------------------------------------------------------------------------------------
# The problem type
# --------------------------------------------------------------------------------------
# eq=False: the fields hold tensors, whose == is elementwise, so a generated __eq__ would
# raise; identity equality and hashing are what callers (caches, sets) need.
@dataclass(frozen=True, eq=False)
class Problem:
    """An eigenvalue problem ``A x = lambda x`` (or ``A x = lambda B x``) with a known spectrum.

    Attributes:
        name: generator name, e.g. ``"laplacian_2d"``.
        description: one sentence for people, with the size.
        operator: the matrix ``A`` (n x n, symmetric).
        eigenvalues: all n exact eigenvalues, ascending, float64 on the CPU; None when
            not known (too large for dense eigh).
        B: the symmetric positive definite ``B`` of a generalized problem, else None.
        params: the generator's arguments, without dtype and device (for display; for a
            registry generator ``generate(problem.name, **problem.params)`` rebuilds it).
    """

    name: str
    description: str
    operator: LinearOperator
    eigenvalues: torch.Tensor | None
    B: LinearOperator | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "eigen"  # "svd": singular values of an m x n operator (the SVD solvers' problems)
    singular_values: torch.Tensor | None = None  # kind "svd": all min(m, n), ascending (None: unknown)

    @property
    def n(self) -> int:
        """The size of the problem (an SVD problem: its number of columns)."""
        return self.operator.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n) of the operator."""
        return self.operator.shape

    @property
    def is_svd(self) -> bool:
        """A singular-value problem (``kind == "svd"``, e.g. a rectangular matrix)."""
        return self.kind == "svd"

    @property
    def k_max(self) -> int:
        """The most values there are: n (eigenvalues) or min(m, n) (singular values)."""
        return min(self.operator.shape) if self.is_svd else self.operator.shape[0]

    @property
    def spectrum(self) -> torch.Tensor | None:
        """The exact values the solvers compute, ascending: eigenvalues, or singular values for kind "svd"."""
        return self.singular_values if self.is_svd else self.eigenvalues

    def reference(self, k: int, which: str = "LA") -> torch.Tensor | None:
        """The k wanted exact eigenvalues (singular values for kind "svd"), in ``which`` order (best first).

        Uses the solvers' own ordering (``explorer.solvers._common.select_order``): LA
        descending, SA ascending, LM by magnitude descending, BE alternating largest and
        smallest. Comparing a solver's ``eigenvalues`` with this is then elementwise.

        Args:
            k: how many, 1 <= k <= n.
            which: "LA", "SA", "LM" or "BE".

        Returns:
            A float64 CPU tensor of shape (k,), or None when the eigenvalues are unknown.

        Raises:
            TypeError: k is not an integer.
            ValueError: k out of range or an unknown ``which``.
        """
        k = check_int("k", k, minimum=None)
        if not 1 <= k <= self.k_max:
            what = "min(m, n)" if self.is_svd else "n"
            raise ValueError(f"`k` must satisfy 1 <= k <= {what} = {self.k_max}, got k={k!r}; ask for at most all "
                             + ("singular values" if self.is_svd else "eigenvalues"))
        if not isinstance(which, str) or which.upper() not in WHICH:
            raise ValueError(f"`which` must be one of {list(WHICH)}, got {which!r}")
        values = self.spectrum
        if values is None:
            return None
        order = select_order(values, which.upper())[: int(k)]
        return values[order]


# --------------------------------------------------------------------------------------
# Shared checks and helpers
# --------------------------------------------------------------------------------------
def _check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 open_interval: bool = True) -> float:
    if not is_real_number(value):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {name}={value!r}")
    if low is not None and high is not None:
        inside = low < value < high if open_interval else low <= value <= high
        if not inside:
            bracket = f"({low:g}, {high:g})" if open_interval else f"[{low:g}, {high:g}]"
            raise ValueError(f"`{name}` must lie in {bracket}, got {name}={value!r}")
    return value


def _check_size(name: str, n: int, limit: int, kind: str) -> None:
    if n > limit:
        raise ValueError(f"`{name}` gives n = {n:,}, above the {kind} limit n <= {limit:,}; "
                         f"pick a smaller size")


def _check_target(dtype: Any, device: Any) -> tuple[torch.dtype, torch.device]:
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"`dtype` must be torch.float32 or torch.float64, got {dtype!r}")
    try:
        return dtype, torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"`device` must name a torch device such as 'cpu' or 'cuda', got {device!r}") from err


def _sparse_operator(matrix: sp.spmatrix | sp.sparray, dtype: torch.dtype, device: torch.device) -> SparseOperator:
    csr = sp.csr_matrix(matrix, dtype=np.float64)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return SparseOperator(csr).to(device=device, dtype=dtype)  # type: ignore[return-value]


def _dense_operator(matrix: torch.Tensor, dtype: torch.dtype, device: torch.device) -> DenseOperator:
    return DenseOperator(matrix.to(device=device, dtype=dtype))


def _dense_eigenvalues(matrix: torch.Tensor) -> torch.Tensor:
    """All eigenvalues of a symmetric float64 CPU matrix, ascending (LAPACK syevd)."""
    return torch.linalg.eigvalsh(matrix.to(dtype=torch.float64, device="cpu"))


def _laplacian_1d_matrix(n: int) -> sp.csr_matrix:
    """tridiag(-1, 2, -1) of size n (Dirichlet ends, unit spacing, unscaled)."""
    off = -np.ones(n - 1)
    return sp.diags([off, 2.0 * np.ones(n), off], offsets=[-1, 0, 1], format="csr", dtype=np.float64)


def _laplacian_1d_eigenvalues(n: int) -> torch.Tensor:
    """``2 - 2 cos(i pi / (n + 1))``, i = 1..n, ascending (float64)."""
    i = torch.arange(1, n + 1, dtype=torch.float64)
    # 4 sin^2(x/2) equals 2 - 2cos(x) but keeps full relative accuracy near 0 (no cancellation).
    return 4.0 * torch.sin(i * math.pi / (2 * (n + 1))) ** 2


def _sum_spectra(*spectra: torch.Tensor) -> torch.Tensor:
    """All sums lam_a + mu_b + ... (the spectrum of a Kronecker sum), ascending."""
    total = spectra[0]
    for spectrum in spectra[1:]:
        total = (total.unsqueeze(1) + spectrum.unsqueeze(0)).reshape(-1)
    return torch.sort(total).values


# --------------------------------------------------------------------------------------
# Laplacians (closed form)
# --------------------------------------------------------------------------------------
def laplacian_1d(n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Problem:
    """The 1-D Dirichlet finite-difference Laplacian ``tridiag(-1, 2, -1)``.

    Eigenvalues ``2 - 2 cos(i pi / (n + 1))``, i = 1..n: all simple, in (0, 4), with
    gaps shrinking like 1/n^2 at both ends (slow convergence for Krylov methods).

    Args:
        n: size (number of interior grid points).
        dtype: float32 or float64.
        device: where the operator lives.

    Returns:
        A sparse problem with closed-form eigenvalues.

    Raises:
        ValueError: n < 1 or n > ``MAX_SPARSE_N``.
    """
    n = check_int("n", n, maximum=MAX_SPARSE_N, hint="pick a smaller grid")
    dtype, device = _check_target(dtype, device)
    return Problem(
        name="laplacian_1d",
        description=f"1-D Dirichlet Laplacian tridiag(-1, 2, -1) on {n:,} grid points (n = {n:,}); "
                    "simple eigenvalues in (0, 4) with O(1/n^2) gaps at both ends.",
        operator=_sparse_operator(_laplacian_1d_matrix(n), dtype, device),
        eigenvalues=_laplacian_1d_eigenvalues(n),
        params={"n": n},
    )


def laplacian_2d(nx: int, ny: int | None = None, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu", max_n: int = MAX_SPARSE_N) -> Problem:
    """The 2-D Dirichlet 5-point Laplacian (stencil 4 / -1) on an nx x ny grid.

    ``A = I_ny (x) T_nx + T_ny (x) I_nx`` with ``T_m = tridiag(-1, 2, -1)``; the
    eigenvalues are all sums ``lam_i(T_nx) + lam_j(T_ny)``. On a square grid (nx = ny)
    the pairs (i, j) and (j, i) give *exactly* double eigenvalues: a deliberate trap for
    single-vector Krylov methods, which find only one vector of each pair.

    Args:
        nx: grid points along x.
        ny: grid points along y (default: nx, a square grid).
        dtype: float32 or float64.
        device: where the operator lives.
        max_n: the size limit; the app's ``MAX_SPARSE_N`` by default (a benchmark that knows
            its memory raises it: n = 10^7 takes about 2 GB as torch CSR, more while it is built).

    Returns:
        A sparse problem (n = nx * ny) with closed-form eigenvalues.

    Raises:
        ValueError: a side < 1 or n > ``max_n``.
    """
    nx = check_int("nx", nx)
    ny = nx if ny is None else check_int("ny", ny)
    _check_size("nx * ny", nx * ny, int(max_n), "sparse")
    dtype, device = _check_target(dtype, device)
    Tx, Ty = _laplacian_1d_matrix(nx), _laplacian_1d_matrix(ny)
    A = sp.kron(sp.identity(ny), Tx) + sp.kron(Ty, sp.identity(nx))
    doubles = " with exact double eigenvalues (square grid)" if nx == ny and nx > 1 else ""
    return Problem(
        name="laplacian_2d",
        description=f"2-D Dirichlet 5-point Laplacian on a {nx} x {ny} grid (n = {nx * ny:,}){doubles}.",
        operator=_sparse_operator(A, dtype, device),
        eigenvalues=_sum_spectra(_laplacian_1d_eigenvalues(nx), _laplacian_1d_eigenvalues(ny)),
        params={"nx": nx, "ny": ny},
    )


def laplacian_3d(nx: int, ny: int | None = None, nz: int | None = None, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> Problem:
    """The 3-D Dirichlet 7-point Laplacian (stencil 6 / -1) on an nx x ny x nz grid.

    Eigenvalues are all sums of three 1-D Laplacian eigenvalues; a cube has
    eigenvalues of multiplicity up to 6.

    Args:
        nx: grid points along x.
        ny: along y (default nx).
        nz: along z (default ny).
        dtype: float32 or float64.
        device: where the operator lives.

    Returns:
        A sparse problem (n = nx * ny * nz) with closed-form eigenvalues.

    Raises:
        ValueError: a side < 1 or n > ``MAX_SPARSE_N``.
    """
    nx = check_int("nx", nx)
    ny = nx if ny is None else check_int("ny", ny)
    nz = ny if nz is None else check_int("nz", nz)
    n = nx * ny * nz
    _check_size("nx * ny * nz", n, MAX_SPARSE_N, "sparse")
    dtype, device = _check_target(dtype, device)
    Tx, Ty, Tz = _laplacian_1d_matrix(nx), _laplacian_1d_matrix(ny), _laplacian_1d_matrix(nz)
    Ix, Iy, Iz = sp.identity(nx), sp.identity(ny), sp.identity(nz)
    A = sp.kron(Iz, sp.kron(Iy, Tx)) + sp.kron(Iz, sp.kron(Ty, Ix)) + sp.kron(Tz, sp.kron(Iy, Ix))
    return Problem(
        name="laplacian_3d",
        description=f"3-D Dirichlet 7-point Laplacian on a {nx} x {ny} x {nz} grid (n = {n:,}).",
        operator=_sparse_operator(A, dtype, device),
        eigenvalues=_sum_spectra(_laplacian_1d_eigenvalues(nx), _laplacian_1d_eigenvalues(ny),
                                 _laplacian_1d_eigenvalues(nz)),
        params={"nx": nx, "ny": ny, "nz": nz},
    )


# --------------------------------------------------------------------------------------
# Diagonal and prescribed spectra
# --------------------------------------------------------------------------------------
def diagonal(values: Sequence[float] | np.ndarray | torch.Tensor, *, dtype: torch.dtype = torch.float64,
             device: torch.device | str = "cpu") -> Problem:
    """``diag(values)``, stored sparse (O(n) memory and matvecs).

    The eigenvectors are the unit vectors, so this is the easiest possible problem for
    checking orderings (LA / SA / LM / BE) and multiplicities by hand.

    Args:
        values: the n diagonal entries (any order), finite reals.
        dtype: float32 or float64.
        device: where the operator lives.

    Returns:
        A sparse problem whose eigenvalues are the sorted ``values``.

    Raises:
        ValueError: not 1-D, empty, non-finite, or more than ``MAX_SPARSE_N`` values.
        TypeError: complex or non-numeric values.
    """
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"`values` must be real numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"`values` must be real, got dtype {array.dtype}; pass the real part")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"`values` must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`values` contains {int(np.sum(~np.isfinite(array)))} NaN or Inf entries; "
                         "pass finite numbers")
    n = array.size
    _check_size("len(values)", n, MAX_SPARSE_N, "sparse")
    dtype, device = _check_target(dtype, device)
    array = array.astype(np.float64)
    # keep explicit zeros out of the pattern; diags + eliminate_zeros does that.
    return Problem(
        name="diagonal",
        description=f"Diagonal matrix of size n = {n:,} with entries in [{array.min():.4g}, {array.max():.4g}].",
        operator=_sparse_operator(sp.diags(array, format="csr"), dtype, device),
        eigenvalues=torch.sort(torch.from_numpy(array.copy())).values,
        params={"n": n},
    )


def _haar_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed orthogonal n x n matrix (float64, CPU).

    QR of a Gaussian matrix, with the columns' signs fixed so that diag(R) > 0; without
    that fix Q is not Haar-distributed (Mezzadri, Notices AMS 54(5), 2007, sec. 5).
    """
    G = torch.randn(n, n, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1.0
    return Q * signs.unsqueeze(0)


def _prescribed_values(n: int, spectrum: str, *, decay: float, gap_ratio: float, cluster_size: int,
                       cluster_spread: float, multiplicity: int, low: float, high: float) -> torch.Tensor:
    """The prescribed eigenvalues, descending (lam_1 >= lam_2 >= ...), float64."""
    if spectrum == "linear":
        return torch.linspace(high, low, n, dtype=torch.float64)
    if spectrum == "geometric":
        return high * decay ** torch.arange(n, dtype=torch.float64)
    if spectrum == "gap":
        if n == 1:
            return torch.tensor([high], dtype=torch.float64)
        second = gap_ratio * high
        if not low < second:
            raise ValueError(f"`low` must be below gap_ratio * high = {second:g} for spectrum='gap', got low={low:g}; "
                             "lower `low`")
        return torch.cat([torch.tensor([high], dtype=torch.float64),
                          torch.linspace(second, low, n - 1, dtype=torch.float64)])
    bulk_top = low + _BULK_TOP * (high - low)
    if spectrum == "cluster":
        if cluster_size > n:
            raise ValueError(f"`cluster_size` must be <= n = {n}, got cluster_size={cluster_size}; lower it")
        t = torch.linspace(0.0, 1.0, cluster_size, dtype=torch.float64) if cluster_size > 1 else torch.zeros(1,
                                                                                              dtype=torch.float64)
        cluster = high * (1.0 - cluster_spread * t)
        if n > cluster_size and not float(cluster[-1]) > bulk_top:
            raise ValueError(f"`cluster_spread` = {cluster_spread:g} makes the cluster [{float(cluster[-1]):g}, "
                             f"{high:g}] reach the bulk (top {bulk_top:g}); use a smaller spread")
        return torch.cat([cluster, torch.linspace(bulk_top, low, n - cluster_size, dtype=torch.float64)])
    if spectrum == "repeated":
        if multiplicity > n:
            raise ValueError(f"`multiplicity` must be <= n = {n}, got multiplicity={multiplicity}; lower it")
        top = torch.full((multiplicity,), high, dtype=torch.float64)
        return torch.cat([top, torch.linspace(bulk_top, low, n - multiplicity, dtype=torch.float64)])
    raise ValueError(f"`spectrum` must be one of {list(SPECTRA)}, got {spectrum!r}")


def prescribed_spectrum(
    n: int,
    spectrum: str = "geometric",
    *,
    seed: int = 0,
    decay: float = 0.8,
    gap_ratio: float = 0.9,
    cluster_size: int = 5,
    cluster_spread: float = 1e-4,
    multiplicity: int = 3,
    low: float = 0.0,
    high: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Problem:
    """A dense ``A = Q diag(lam) Q^T`` with a chosen spectrum and Haar-random eigenvectors.

    Spectra (lam_1 is the largest):

    * ``"linear"``: n evenly spaced values from ``high`` down to ``low``.
    * ``"geometric"``: ``lam_i = high * decay^(i-1)`` (fast decay: easy for Krylov).
    * ``"gap"``: ``lam_1 = high``, ``lam_2 = gap_ratio * high``, the rest evenly spaced
      down to ``low``. Power iteration converges like ``gap_ratio^k``.
    * ``"cluster"``: ``cluster_size`` values evenly spaced in
      ``[high (1 - cluster_spread), high]``, then a bulk evenly spaced in
      ``[low, low + (high - low) / 2]``. Resolving the cluster needs a block method.
    * ``"repeated"``: ``high`` repeated ``multiplicity`` times, then the same bulk.

    Args:
        n: size.
        spectrum: one of ``SPECTRA``.
        seed: seed of the local generator for Q.
        decay: ratio of the geometric spectrum, in (0, 1).
        gap_ratio: lam_2 / lam_1 for "gap", in (0, 1).
        cluster_size: eigenvalues in the top cluster (>= 1).
        cluster_spread: relative width of the cluster, in (0, 1).
        multiplicity: copies of the top eigenvalue for "repeated" (>= 1).
        low: bottom of the spectrum ("linear", "gap", and the bulk of "cluster"/"repeated").
        high: the largest eigenvalue; must be > 0 (except "linear", where low < high suffices).
        dtype: float32 or float64.
        device: where the operator lives.

    Returns:
        A dense problem whose eigenvalues are exactly the prescribed ``lam`` (the
        assembled matrix carries rounding of order n eps ||A||).

    Raises:
        ValueError: a parameter out of range, or n > ``MAX_DENSE_N``.
    """
    n = check_int("n", n, maximum=MAX_DENSE_N, hint="dense problems need n^2 memory; use a sparse generator")
    if spectrum not in SPECTRA:
        raise ValueError(f"`spectrum` must be one of {list(SPECTRA)}, got {spectrum!r}")
    seed = check_int("seed", seed, minimum=0)
    decay = _check_float("decay", decay, low=0.0, high=1.0)
    gap_ratio = _check_float("gap_ratio", gap_ratio, low=0.0, high=1.0)
    cluster_size = check_int("cluster_size", cluster_size)
    cluster_spread = _check_float("cluster_spread", cluster_spread, low=0.0, high=1.0)
    multiplicity = check_int("multiplicity", multiplicity)
    low, high = _check_float("low", low), _check_float("high", high)
    if not low < high:
        raise ValueError(f"`low` must be below `high`, got low={low:g}, high={high:g}")
    if spectrum != "linear" and not high > 0:
        raise ValueError(f"`high` (the largest eigenvalue) must be > 0 for spectrum={spectrum!r}, got high={high:g}; "
                         "shift the interval up")
    dtype, device = _check_target(dtype, device)
    lam = _prescribed_values(n, spectrum, decay=decay, gap_ratio=gap_ratio, cluster_size=cluster_size,
                             cluster_spread=cluster_spread, multiplicity=multiplicity, low=low, high=high)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    Q = _haar_orthogonal(n, generator)
    A = (Q * lam.unsqueeze(0)) @ Q.T
    A = 0.5 * (A + A.T)  # exactly symmetric: the product is only symmetric up to rounding
    details = {
        "linear": f"evenly spaced in [{low:g}, {high:g}]",
        "geometric": f"geometric, lam_i = {high:g} * {decay:g}^(i-1)",
        "gap": f"gap lam_2 / lam_1 = {gap_ratio:g}",
        "cluster": f"a cluster of {min(cluster_size, n)} at the top with relative spread {cluster_spread:g}",
        "repeated": f"top eigenvalue {high:g} repeated {min(multiplicity, n)} times",
    }[spectrum]
    params: dict[str, Any] = {"n": n, "spectrum": spectrum, "seed": seed, "low": low, "high": high}
    params.update({"geometric": {"decay": decay}, "gap": {"gap_ratio": gap_ratio},
                   "cluster": {"cluster_size": cluster_size, "cluster_spread": cluster_spread},
                   "repeated": {"multiplicity": multiplicity}}.get(spectrum, {}))
    return Problem(
        name="prescribed_spectrum",
        description=f"Dense Q diag(lam) Q^T of size n = {n:,} (Haar-random Q, seed {seed}) with {details}.",
        operator=_dense_operator(A, dtype, device),
        eigenvalues=torch.sort(lam).values,
        params=params,
    )


# --------------------------------------------------------------------------------------
# Random matrices (eigenvalues from dense eigh)
# --------------------------------------------------------------------------------------
def wishart(n: int, m: int | None = None, seed: int = 0, *, dtype: torch.dtype = torch.float64,
            device: torch.device | str = "cpu") -> Problem:
    """A random Wishart matrix ``X X^T / m`` with X an n x m standard Gaussian.

    With m >= n it is symmetric positive definite, with eigenvalues spread over the
    Marchenko-Pastur interval ``[(1 - sqrt(n/m))^2, (1 + sqrt(n/m))^2]``; with m < n it is
    positive semidefinite of rank m (n - m zero eigenvalues).

    Args:
        n: size.
        m: number of samples (columns of X); default 2 n.
        seed: seed of the local generator.
        dtype: float32 or float64.
        device: where the operator lives.

    Returns:
        A dense problem; eigenvalues by float64 ``eigvalsh`` when n <= ``MAX_EIGVALSH_N``,
        else None.

    Raises:
        ValueError: n or m out of range.
    """
    n = check_int("n", n, maximum=MAX_DENSE_N, hint="dense problems need n^2 memory; use a sparse generator")
    m = 2 * n if m is None else check_int("m", m, maximum=4 * MAX_DENSE_N)
    seed = check_int("seed", seed, minimum=0)
    dtype, device = _check_target(dtype, device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    X = torch.randn(n, m, generator=generator, dtype=torch.float64)
    A = (X @ X.T) / m
    A = 0.5 * (A + A.T)
    rank = "positive definite" if m >= n else f"rank {m} (positive semidefinite)"
    return Problem(
        name="wishart",
        description=f"Random Wishart matrix X X^T / m of size n = {n:,} with m = {m:,} samples (seed {seed}), {rank}.",
        operator=_dense_operator(A, dtype, device),
        eigenvalues=_dense_eigenvalues(A) if n <= MAX_EIGVALSH_N else None,
        params={"n": n, "m": m, "seed": seed},
    )


def _upper_pairs(index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map linear indices 0 <= k < n(n-1)/2 onto the strict upper triangle, row by row.

    Row i holds the pairs (i, i+1..n-1) and starts at ``s_i = i n - i (i + 1) / 2``. The
    row is found from the quadratic formula and then corrected by one step where
    floating point put it off by one.
    """
    k = index.astype(np.int64)
    b = 2.0 * n - 1.0
    i = np.floor((b - np.sqrt(b * b - 8.0 * k)) / 2.0).astype(np.int64)
    i = np.clip(i, 0, n - 2)

    def start(row: np.ndarray) -> np.ndarray:
        return row * n - row * (row + 1) // 2

    i = np.where(start(i) > k, i - 1, i)
    i = np.where(start(i + 1) <= k, i + 1, i)
    j = k - start(i) + i + 1
    return i, j


def random_graph_laplacian(n: int, p: float = 0.05, seed: int = 0, *, dtype: torch.dtype = torch.float64,
                           device: torch.device | str = "cpu") -> Problem:
    """The Laplacian ``L = D - W`` of an Erdos-Renyi graph G(n, p).

    Each of the n(n-1)/2 possible edges is present independently with probability p
    (drawn exactly: a binomial number of edges, then a uniform subset of the pairs).
    L is positive semidefinite; 0 is an eigenvalue with multiplicity equal to the
    number of connected components (one when p is well above log(n)/n).

    Args:
        n: number of vertices.
        p: edge probability, in (0, 1].
        seed: seed of the local numpy generator.
        dtype: float32 or float64.
        device: where the operator lives.

    Returns:
        A sparse problem; eigenvalues by float64 ``eigvalsh`` when n <= ``MAX_EIGVALSH_N``,
        else None.

    Raises:
        ValueError: n or p out of range, or too many expected edges.
    """
    n = check_int("n", n, maximum=MAX_SPARSE_N, hint="pick fewer vertices")
    p = _check_float("p", p, low=0.0, high=1.0, open_interval=False)
    if p == 0.0:
        raise ValueError("`p` must be > 0 (p = 0 gives the zero matrix); e.g. p = 0.05")
    seed = check_int("seed", seed, minimum=0)
    n_pairs = n * (n - 1) // 2
    if p * n_pairs > MAX_GRAPH_EDGES:
        raise ValueError(f"`p` = {p:g} with n = {n:,} expects {p * n_pairs:,.0f} edges, above the limit "
                         f"{MAX_GRAPH_EDGES:,}; lower `p` or `n`")
    dtype, device = _check_target(dtype, device)
    rng = np.random.default_rng(seed)
    n_edges = int(rng.binomial(n_pairs, p)) if n_pairs > 0 else 0
    chosen = np.sort(rng.choice(n_pairs, size=n_edges, replace=False)) if n_edges else np.zeros(0, np.int64)
    rows, cols = _upper_pairs(chosen, n)
    W = sp.coo_matrix((np.ones(n_edges), (rows, cols)), shape=(n, n)).tocsr()
    W = W + W.T
    L = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    L = sp.csr_matrix(L)
    eigenvalues = _dense_eigenvalues(torch.from_numpy(L.toarray())) if n <= MAX_EIGVALSH_N else None
    return Problem(
        name="random_graph_laplacian",
        description=f"Laplacian D - W of an Erdos-Renyi graph with n = {n:,} vertices, p = {p:g} "
                    f"({n_edges:,} edges, seed {seed}).",
        operator=_sparse_operator(L, dtype, device),
        eigenvalues=eigenvalues,
        params={"n": n, "p": p, "seed": seed},
    )


# --------------------------------------------------------------------------------------
# Generalized: the Mikota pair
# --------------------------------------------------------------------------------------
def _mikota_matrices(n: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Stiffness K (tridiagonal) and mass M = diag(1, 1/2, ..., 1/n), as in scipy's MikotaPair.

    K[i, i] = 2 (n - i) - 1 and K[i, i+1] = K[i+1, i] = -(n - 1 - i) for 0-based i.
    """
    i = np.arange(n, dtype=np.float64)
    main = 2.0 * (n - i) - 1.0
    off = -(n - 1.0 - i[:-1])
    K = sp.diags([off, main, off], offsets=[-1, 0, 1], format="csr", dtype=np.float64)
    M = sp.diags(1.0 / (i + 1.0), format="csr", dtype=np.float64)
    return K, M


def mikota_pair(n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Problem:
    """The Mikota pair: ``K x = lambda M x`` with eigenvalues exactly 1, 4, 9, ..., n^2.

    K (the stiffness of a mass-spring chain) is tridiagonal symmetric positive definite,
    M = diag(1, 1/2, ..., 1/n) the masses. Both become ill-conditioned as n grows (the
    eigenvalues span 1 to n^2), which stresses generalized solvers such as LOBPCG.

    Args:
        n: size.
        dtype: float32 or float64.
        device: where the operators live.

    Returns:
        A generalized problem: ``operator`` = K, ``B`` = M, eigenvalues (1..n)^2.

    Raises:
        ValueError: n < 1 or n > ``MAX_SPARSE_N``.

    References:
        J. Mikota, Z. Angew. Math. Mech. 81 (2001), S2, S201-S202;
        scipy.sparse.linalg._special_sparse_arrays.MikotaPair.
    """
    n = check_int("n", n, maximum=MAX_SPARSE_N, hint="pick a smaller size")
    dtype, device = _check_target(dtype, device)
    K, M = _mikota_matrices(n)
    return Problem(
        name="mikota_pair",
        description=f"Generalized Mikota pair K x = lambda M x of size n = {n:,} with eigenvalues exactly "
                    f"1, 4, 9, ..., {n}^2.",
        operator=_sparse_operator(K, dtype, device),
        eigenvalues=torch.arange(1, n + 1, dtype=torch.float64) ** 2,
        B=_sparse_operator(M, dtype, device),
        params={"n": n},
    )


# --------------------------------------------------------------------------------------
# Rectangular problems with known singular values (for the SVD solvers)
# --------------------------------------------------------------------------------------
def _haar_frame(m: int, r: int, generator: torch.Generator) -> torch.Tensor:
    """An m x r matrix with orthonormal columns, Haar-distributed on the Stiefel manifold (float64, CPU):
    the first r columns of a Haar orthogonal matrix, drawn as the QR factor of an m x r Gaussian with
    diag(R) > 0 (Mezzadri 2007, sec. 5; the same argument as ``_haar_orthogonal``, without the m x m)."""
    G = torch.randn(m, r, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1.0
    return Q * signs.unsqueeze(0)


def prescribed_singular_values(
    m: int,
    n: int,
    spectrum: str = "geometric",
    *,
    values: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
    decay: float = 0.8,
    gap_ratio: float = 0.9,
    cluster_size: int = 5,
    cluster_spread: float = 1e-4,
    multiplicity: int = 3,
    low: float = 0.0,
    high: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Problem:
    """A dense m x n ``A = U diag(s) V^T`` with chosen singular values and Haar-random U, V.

    ``U`` (m x r) and ``V`` (n x r), r = min(m, n), have orthonormal columns drawn from the Haar
    measure; both orientations (tall m > n, wide m < n, square) work the same. The singular
    values are one of the ``SPECTRA`` of :func:`prescribed_spectrum` on [low, high] (``low >= 0``),
    or exactly ``values`` (r non-negative numbers, any order) when given. The assembled matrix
    is within ~r eps ||A|| of the exact one, so its singular values are within that of ``s``
    (Weyl's inequality for singular values).

    Args:
        m, n: rows and columns.
        spectrum: one of ``SPECTRA`` (ignored when ``values`` is given).
        values: the r singular values themselves.
        seed: seed of the local generator for U and V.
        decay, gap_ratio, cluster_size, cluster_spread, multiplicity, low, high: as in
            :func:`prescribed_spectrum`; ``low`` must be >= 0.
        dtype: float32 or float64.
        device: where the operator lives.

    Returns:
        A dense SVD problem (``kind="svd"``, ``singular_values`` ascending, ``eigenvalues`` None).

    Raises:
        ValueError: a size or parameter out of range, negative or non-finite values, or
            m * n above ``MAX_DENSE_N ** 2``.
    """
    m = check_int("m", m, maximum=4 * MAX_DENSE_N, hint="dense problems need m n memory")
    n = check_int("n", n, maximum=4 * MAX_DENSE_N, hint="dense problems need m n memory")
    if m * n > MAX_DENSE_N ** 2:
        raise ValueError(f"`m` x `n` = {m:,} x {n:,} is above the dense limit of {MAX_DENSE_N ** 2:,} entries; "
                         "pick smaller sizes")
    r = min(m, n)
    seed = check_int("seed", seed, minimum=0)
    dtype, device = _check_target(dtype, device)
    if values is not None:
        array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, dtype=float)
        if array.ndim != 1 or array.size != r:
            raise ValueError(f"`values` must hold min(m, n) = {r} singular values, got shape {array.shape}")
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise ValueError("`values` must be finite and >= 0 (singular values are non-negative)")
        sigma = torch.sort(torch.from_numpy(array.astype(np.float64).copy()), descending=True).values
        details = f"prescribed singular values in [{float(sigma[-1]):.4g}, {float(sigma[0]):.4g}]"
        params: dict[str, Any] = {"m": m, "n": n, "seed": seed}
    else:
        if spectrum not in SPECTRA:
            raise ValueError(f"`spectrum` must be one of {list(SPECTRA)}, got {spectrum!r}")
        low, high = _check_float("low", low), _check_float("high", high)
        if low < 0:
            raise ValueError(f"`low` must be >= 0 for singular values, got low={low:g}")
        if not low < high:
            raise ValueError(f"`low` must be below `high`, got low={low:g}, high={high:g}")
        sigma = _prescribed_values(r, spectrum, decay=_check_float("decay", decay, low=0.0, high=1.0),
                                   gap_ratio=_check_float("gap_ratio", gap_ratio, low=0.0, high=1.0),
                                   cluster_size=check_int("cluster_size", cluster_size),
                                   cluster_spread=_check_float("cluster_spread", cluster_spread, low=0.0, high=1.0),
                                   multiplicity=check_int("multiplicity", multiplicity), low=low, high=high)
        details = f"{spectrum} singular values on [{low:g}, {high:g}]"
        params = {"m": m, "n": n, "spectrum": spectrum, "seed": seed, "low": low, "high": high}
        params.update({"geometric": {"decay": decay}, "gap": {"gap_ratio": gap_ratio},
                       "cluster": {"cluster_size": cluster_size, "cluster_spread": cluster_spread},
                       "repeated": {"multiplicity": multiplicity}}.get(spectrum, {}))
    generator = torch.Generator(device="cpu").manual_seed(seed)
    U = _haar_frame(m, r, generator)
    V = _haar_frame(n, r, generator)
    A = (U * sigma.unsqueeze(0)) @ V.T
    shape = "tall" if m > n else "wide" if m < n else "square"
    return Problem(
        name="prescribed_singular_values",
        description=f"Dense {shape} U diag(s) V^T of size {m:,} x {n:,} (Haar-random U, V, seed {seed}) with {details}.",
        operator=DenseOperator(A.to(device=device, dtype=dtype), is_symmetric=False),
        eigenvalues=None, params=params, kind="svd", singular_values=torch.sort(sigma).values,
    )


def _difference_matrix(n: int) -> sp.csr_matrix:
    """The (n + 1) x n forward difference with Dirichlet ends: D^T D = tridiag(-1, 2, -1)."""
    ones = np.ones(n)
    return sp.diags([ones, -ones], offsets=[0, -1], shape=(n + 1, n), format="csr", dtype=np.float64)


def gradient_1d(n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Problem:
    """The (n + 1) x n difference matrix D (1 on the diagonal, -1 below it): a tall sparse SVD problem.

    ``D^T D`` is the 1-D Dirichlet Laplacian, so the singular values are the square roots of its
    eigenvalues, ``2 sin(i pi / (2 (n + 1)))``, i = 1..n (closed form): simple, in (0, 2), with
    relative gaps of O(1/i) at the bottom and O(1/n^2) at the top.

    Raises:
        ValueError: n < 1 or n > ``MAX_SPARSE_N``.
    """
    n = check_int("n", n, maximum=MAX_SPARSE_N, hint="pick a smaller grid")
    dtype, device = _check_target(dtype, device)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return Problem(
        name="gradient_1d",
        description=f"1-D difference matrix of size {n + 1:,} x {n:,} (D^T D = the 1-D Laplacian); singular values "
                    "2 sin(i pi / (2 (n + 1))).",
        operator=SparseOperator(_difference_matrix(n), is_symmetric=False).to(device=device, dtype=dtype),
        eigenvalues=None, params={"n": n}, kind="svd", singular_values=2.0 * torch.sin(i * math.pi / (2 * (n + 1))),
    )


def gradient_2d(nx: int, ny: int | None = None, *, dtype: torch.dtype = torch.float64,
                device: torch.device | str = "cpu") -> Problem:
    """The discrete gradient of an nx x ny grid with Dirichlet ends: ``G = [I (x) D_nx; D_ny (x) I]``.

    G has ``ny (nx + 1) + (ny + 1) nx`` rows and ``nx ny`` columns (a tall sparse matrix, 2 nonzeros
    per row) and ``G^T G`` is the 2-D 5-point Laplacian (:func:`laplacian_2d`), so the singular values
    are the square roots of its closed-form eigenvalues; a square grid has exact double ones.

    Raises:
        ValueError: a side < 1 or nx * ny > ``MAX_SPARSE_N``.
    """
    nx = check_int("nx", nx)
    ny = nx if ny is None else check_int("ny", ny)
    _check_size("nx * ny", nx * ny, MAX_SPARSE_N, "sparse")
    dtype, device = _check_target(dtype, device)
    G = sp.vstack([sp.kron(sp.identity(ny), _difference_matrix(nx)), sp.kron(_difference_matrix(ny), sp.identity(nx))])
    lam = _sum_spectra(_laplacian_1d_eigenvalues(nx), _laplacian_1d_eigenvalues(ny))
    m = G.shape[0]
    return Problem(
        name="gradient_2d",
        description=f"Discrete gradient of a {nx} x {ny} grid, a sparse {m:,} x {nx * ny:,} matrix (G^T G = the 2-D "
                    "Laplacian): singular values sqrt(lambda) of the Laplacian" +
                    (", with exact doubles (square grid)." if nx == ny and nx > 1 else "."),
        operator=SparseOperator(sp.csr_matrix(G), is_symmetric=False).to(device=device, dtype=dtype),
        eigenvalues=None, params={"nx": nx, "ny": ny}, kind="svd", singular_values=torch.sqrt(lam),
    )


# --------------------------------------------------------------------------------------
# The registry (the app's "Generate" menu)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratorSpec:
    """What the app's Generate menu knows about one generator.

    Attributes:
        name: registry key (the generator's name).
        label: menu label for people.
        fn: builds the problem from keyword arguments (``params`` plus dtype/device).
        summary: one sentence on what the problem tests.
        params: the form: one ``ParamSpec`` per keyword, with defaults sized for the app.
    """

    name: str
    label: str
    fn: Callable[..., Problem]
    summary: str
    params: tuple[ParamSpec, ...] = ()

    def param(self, name: str) -> ParamSpec:
        """The ``ParamSpec`` called ``name`` (KeyError naming the choices otherwise)."""
        for spec in self.params:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no parameter {name!r}; it has {[p.name for p in self.params]}")

    def defaults(self) -> dict[str, Any]:
        """The menu's default value for every parameter."""
        return {spec.name: spec.default for spec in self.params}


def _diagonal_range(n: int, low: float = 1.0, high: float = 100.0, spacing: str = "linear", *,
                    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Problem:
    """The menu's diagonal: n entries from low to high, evenly or geometrically spaced."""
    n = check_int("n", n, maximum=MAX_SPARSE_N)
    low, high = _check_float("low", low), _check_float("high", high)
    if not low < high:
        raise ValueError(f"`low` must be below `high`, got low={low:g}, high={high:g}")
    if spacing == "linear":
        values = np.linspace(low, high, n)
    elif spacing == "geometric":
        if not low > 0:
            raise ValueError(f"`low` must be > 0 for geometric spacing, got low={low:g}; use linear spacing")
        values = np.geomspace(low, high, n)
    else:
        raise ValueError(f"`spacing` must be 'linear' or 'geometric', got {spacing!r}")
    problem = diagonal(values, dtype=dtype, device=device)
    params = {"n": n, "low": low, "high": high, "spacing": spacing}
    return Problem(name=problem.name, description=f"Diagonal matrix of size n = {n:,} with {spacing}ly spaced "
                   f"entries from {low:g} to {high:g}.", operator=problem.operator,
                   eigenvalues=problem.eigenvalues, params=params)


_SEED = ParamSpec("seed", "int", 0, "Seed of the local random generator (same seed, same matrix).", minimum=0)

GENERATORS: dict[str, GeneratorSpec] = {
    spec.name: spec
    for spec in (
        GeneratorSpec(
            "laplacian_2d", "2-D Laplacian (sparse)", laplacian_2d,
            "5-point Dirichlet Laplacian; a square grid has exact double eigenvalues.",
            (ParamSpec("nx", "int", 30, "Grid points along x.", minimum=1, maximum=1000),
             ParamSpec("ny", "int", 30, "Grid points along y (equal to nx: double eigenvalues).", minimum=1,
                       maximum=1000)),
        ),
        GeneratorSpec(
            "laplacian_1d", "1-D Laplacian (sparse)", laplacian_1d,
            "tridiag(-1, 2, -1): simple eigenvalues with tiny gaps at both ends.",
            (ParamSpec("n", "int", 1000, "Grid points (matrix size).", minimum=1, maximum=MAX_SPARSE_N),),
        ),
        GeneratorSpec(
            "laplacian_3d", "3-D Laplacian (sparse)", laplacian_3d,
            "7-point Dirichlet Laplacian; a cube has eigenvalues of multiplicity up to 6.",
            (ParamSpec("nx", "int", 12, "Grid points along x.", minimum=1, maximum=120),
             ParamSpec("ny", "int", 12, "Grid points along y.", minimum=1, maximum=120),
             ParamSpec("nz", "int", 12, "Grid points along z.", minimum=1, maximum=120)),
        ),
        GeneratorSpec(
            "prescribed_spectrum", "Prescribed spectrum (dense)", prescribed_spectrum,
            "Q diag(lam) Q^T with a chosen spectrum: geometric decay, a gap, a cluster or a repeated top.",
            (ParamSpec("n", "int", 500, "Matrix size (dense: n^2 memory, O(n^3) to build).", minimum=1,
                       maximum=MAX_EIGVALSH_N),
             ParamSpec("spectrum", "choice", "geometric", "Shape of the spectrum.", choices=SPECTRA),
             _SEED,
             ParamSpec("decay", "float", 0.8, "geometric: lam_i = high * decay^(i-1).", minimum=1e-3,
                       maximum=0.999),
             ParamSpec("gap_ratio", "float", 0.9, "gap: lam_2 / lam_1.", minimum=1e-3, maximum=0.999999),
             ParamSpec("cluster_size", "int", 5, "cluster: eigenvalues in the top cluster.", minimum=1,
                       maximum=MAX_EIGVALSH_N),
             ParamSpec("cluster_spread", "float", 1e-4, "cluster: relative width of the top cluster.",
                       minimum=1e-12, maximum=0.4, log_scale=True),
             ParamSpec("multiplicity", "int", 3, "repeated: copies of the top eigenvalue.", minimum=1,
                       maximum=MAX_EIGVALSH_N),
             ParamSpec("low", "float", 0.0, "Bottom of the spectrum (linear, gap, and the bulk).",
                       minimum=-1e6, maximum=1e6),
             ParamSpec("high", "float", 1.0, "The largest eigenvalue.", minimum=-1e6, maximum=1e6)),
        ),
        GeneratorSpec(
            "diagonal", "Diagonal (sparse)", _diagonal_range,
            "diag(values): eigenvectors are unit vectors, the simplest check of orderings.",
            (ParamSpec("n", "int", 500, "Matrix size.", minimum=1, maximum=MAX_SPARSE_N),
             ParamSpec("low", "float", 1.0, "Smallest entry.", minimum=-1e12, maximum=1e12),
             ParamSpec("high", "float", 100.0, "Largest entry.", minimum=-1e12, maximum=1e12),
             ParamSpec("spacing", "choice", "linear", "How entries are spaced between low and high.",
                       choices=("linear", "geometric"))),
        ),
        GeneratorSpec(
            "wishart", "Random Wishart X X^T / m (dense)", wishart,
            "Random symmetric positive definite matrix; eigenvalues by dense eigh.",
            (ParamSpec("n", "int", 300, "Matrix size.", minimum=1, maximum=MAX_EIGVALSH_N),
             ParamSpec("m", "int", 600, "Samples (columns of X); m < n gives a singular matrix of rank m.",
                       minimum=1, maximum=4 * MAX_EIGVALSH_N),
             _SEED),
        ),
        GeneratorSpec(
            "random_graph_laplacian", "Random graph Laplacian (sparse)", random_graph_laplacian,
            "L = D - W of an Erdos-Renyi graph: PSD with a zero eigenvalue per connected component.",
            (ParamSpec("n", "int", 500, "Vertices (eigenvalues known only for n <= "
                       f"{MAX_EIGVALSH_N}).", minimum=2, maximum=50_000),
             ParamSpec("p", "float", 0.05, "Edge probability.", minimum=1e-6, maximum=1.0, log_scale=True),
             _SEED),
        ),
        GeneratorSpec(
            "prescribed_singular_values", "Prescribed singular values, rectangular (dense, SVD)",
            prescribed_singular_values,
            "U diag(s) V^T, m x n with Haar-random U and V: a rectangular matrix for the SVD solvers.",
            (ParamSpec("m", "int", 600, "Rows.", minimum=1, maximum=8000),
             ParamSpec("n", "int", 200, "Columns (fewer than m: tall; more: wide).", minimum=1, maximum=8000),
             ParamSpec("spectrum", "choice", "geometric", "Shape of the singular values.", choices=SPECTRA),
             _SEED,
             ParamSpec("decay", "float", 0.8, "geometric: s_i = high * decay^(i-1).", minimum=1e-3, maximum=0.999),
             ParamSpec("gap_ratio", "float", 0.9, "gap: s_2 / s_1.", minimum=1e-3, maximum=0.999999),
             ParamSpec("low", "float", 0.0, "Smallest singular value (linear, gap, and the bulk).", minimum=0.0,
                       maximum=1e6),
             ParamSpec("high", "float", 1.0, "The largest singular value.", minimum=1e-12, maximum=1e6)),
        ),
        GeneratorSpec(
            "gradient_2d", "Grid gradient, rectangular (sparse, SVD)", gradient_2d,
            "Discrete gradient G of a grid: G^T G is the 2-D Laplacian, so the singular values are known.",
            (ParamSpec("nx", "int", 30, "Grid points along x.", minimum=1, maximum=1000),
             ParamSpec("ny", "int", 30, "Grid points along y.", minimum=1, maximum=1000)),
        ),
        GeneratorSpec(
            "mikota_pair", "Mikota pair K x = lambda M x (generalized)", mikota_pair,
            "Generalized mass-spring problem with eigenvalues exactly 1, 4, ..., n^2 (ill-conditioned).",
            (ParamSpec("n", "int", 100, "Matrix size.", minimum=1, maximum=100_000),),
        ),
    )
}


def generate(name: str, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
             menu_defaults: bool = True, **params: Any) -> Problem:
    """Build the problem ``name`` from the registry, validating every parameter.

    Parameters not given take the menu defaults (``GENERATORS[name].defaults()``), or with
    ``menu_defaults=False`` the generator function's own defaults where it has one (so
    ``generate("laplacian_2d", nx=300, menu_defaults=False)`` is ``laplacian_2d(300)``, the
    300 x 300 grid, as the command line's ``laplacian_2d:300`` means).

    Args:
        name: a key of ``GENERATORS``.
        dtype: float32 or float64.
        device: where the operator lives.
        menu_defaults: fill missing parameters from the menu (True) or the function.
        **params: the generator's parameters (see ``GENERATORS[name].params``).

    Returns:
        The problem.

    Raises:
        ValueError: unknown name, or a value outside its ParamSpec's range.
        TypeError: an unknown parameter or a value of the wrong type.
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    spec = GENERATORS[name]
    known = {p.name for p in spec.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(f"generator {name!r} got unexpected parameter(s) {unknown}; it accepts {sorted(known)}")
    values = spec.defaults()
    if not menu_defaults:
        import inspect

        signature = inspect.signature(spec.fn).parameters
        values = {key: value for key, value in values.items()
                  if key not in signature or signature[key].default is inspect.Parameter.empty}
    for key, value in params.items():
        values[key] = spec.param(key).validate(value)
    return spec.fn(**values, dtype=dtype, device=device)
