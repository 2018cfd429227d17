"""Whole-spectrum analyses of a symmetric operator: SLQ spectral density, Hutchinson trace, layer norms.

Both estimators need only matvecs, so they run on any ``LinearOperator`` (a model's
``HessianOperator`` or ``GGNOperator`` in particular), and both are live-tracked like
a solver: one ``IterationRecord`` per random probe through the usual ``Tracker``
protocol, and a tracker's ``StopSolve`` ends them with the partial estimate.

* :func:`spectral_density`, stochastic Lanczos quadrature (SLQ). For each of
  ``n_probes`` Rademacher vectors z (v = z / ||z||), ``n_steps`` Lanczos steps with
  full reorthogonalization give T = U diag(theta) U^T; the nodes theta_k with
  weights tau_k = U[0, k]^2 form a Gauss quadrature rule for the spectral measure
  of A seen from v, and averaging the rules over the probes estimates the spectral
  density phi(t) = (1/n) sum_i delta(t - lambda_i) (Ubaru, Chen & Saad 2017; Lin,
  Saad & Yang 2016). For any polynomial f of degree <= 2 n_steps - 1 the rule is
  exact per probe, so E[ sum_k tau_k f(theta_k) ] = tr f(A) / n. Full
  reorthogonalization costs O(n m) per step but keeps the rule free of ghost nodes
  (what PyHessian also does).
* :func:`hutchinson_trace`: tr(A) = E[z^T A z] for Rademacher z (Hutchinson 1989);
  variance 2 sum_{i != j} A_ij^2, reported as the standard error of the mean.

References:
    S. Ubaru, J. Chen, Y. Saad, "Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature", SIAM J. Matrix Anal. Appl. 38(4), 2017.
    L. Lin, Y. Saad, C. Yang, "Approximating spectral densities of large matrices",
    SIAM Review 58(1), 2016 (kernel smoothing, section 3).
    M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Comm. Stat. Simul. Comput. 18(3), 1989.
    B. Ghorbani, S. Krishnan, Y. Xiao, "An investigation into neural net optimization via
    Hessian eigenvalue density", ICML 2019 (SLQ on network Hessians).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from explorer.operators import CountedOperator, LinearOperator
from explorer.tracking.results import SolveStatus
from explorer.tracking import IterationRecord, NullTracker, SolveStart, StopSolve, Tracker

__all__ = [
    "SpectralDensity",
    "TraceEstimate",
    "spectral_density",
    "hutchinson_trace",
    "lanczos_tridiagonal",
    "layer_norms",
    "rademacher",
]


def rademacher(n: int, generator: torch.Generator, *, dtype: torch.dtype = torch.float64,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """A vector of independent +-1 entries drawn from a local generator (on the CPU, then moved)."""
    signs = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int8)
    return (2 * signs - 1).to(device=device, dtype=dtype)


def lanczos_tridiagonal(operator: LinearOperator, v0: torch.Tensor, n_steps: int, *,
                        reorthogonalize: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """m steps of Lanczos from v0: the tridiagonal T's diagonal and off-diagonal.

    Args:
        operator: symmetric (n, n).
        v0: start vector (normalized here).
        n_steps: m <= n.
        reorthogonalize: full (two-pass classical Gram-Schmidt) reorthogonalization
            against the whole basis, so that no spurious copies of converged Ritz values
            appear (Paige 1976; Parlett, The Symmetric Eigenvalue Problem, 13-1).

    Returns:
        (alpha (m',), beta (m'-1,), beta_last ()) with m' <= m: fewer steps when the
        Krylov space became invariant (beta below n eps ||T||), in which case the rule
        is exact. ``beta_last`` is the norm of the last residual (0 on breakdown).

    References:
        C. Lanczos 1950; G. H. Golub, C. F. Van Loan, Matrix Computations, 4th ed., Algorithm 10.1.1.
    """
    n = operator.shape[0]
    m = min(int(n_steps), n)
    dtype, device = operator.dtype, operator.device
    V = torch.zeros(n, m, dtype=dtype, device=device)
    alpha = torch.zeros(m, dtype=dtype, device=device)
    beta = torch.zeros(m, dtype=dtype, device=device)
    v = v0.to(device=device, dtype=dtype)
    v = v / torch.linalg.vector_norm(v)
    eps = torch.finfo(dtype).eps
    steps = m
    for j in range(m):
        V[:, j] = v
        w = operator.matvec(v)
        alpha[j] = v @ w
        w = w - alpha[j] * v - (beta[j - 1] * V[:, j - 1] if j > 0 else 0.0)
        if reorthogonalize:
            basis = V[:, : j + 1]
            for _ in range(2):  # "twice is enough" (Kahan-Parlett)
                w = w - basis @ (basis.T @ w)
        beta[j] = torch.linalg.vector_norm(w)
        scale = float(alpha[: j + 1].abs().max()) + float(beta[: j + 1].abs().max())
        if j + 1 < m and float(beta[j]) <= n * eps * max(scale, torch.finfo(dtype).tiny):
            steps = j + 1
            beta[j] = 0.0
            break
        if j + 1 < m:
            v = w / beta[j]
    return alpha[:steps].clone(), beta[: steps - 1].clone(), beta[steps - 1].clone()


@dataclass(frozen=True)
class SpectralDensity:
    """An SLQ estimate of the spectral density.

    Attributes:
        nodes: (n_probes, m) Gauss nodes (Ritz values) per probe; NaN where a probe
            stopped early (invariant subspace).
        weights: (n_probes, m) quadrature weights (each row sums to 1); 0 where NaN.
        n: operator size.
        n_matvec: operator applications.
        elapsed_s: wall time.
        status: CONVERGED when every probe ran, STOPPED when a tracker stopped it.
        seed: of the probes.
    """

    nodes: torch.Tensor
    weights: torch.Tensor
    n: int
    n_matvec: int
    elapsed_s: float
    status: SolveStatus
    seed: int | None = None
    message: str = ""
    history: tuple[IterationRecord, ...] = field(default=(), repr=False)

    @property
    def n_probes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.nodes.shape[1]) if self.nodes.ndim == 2 else 0

    def _flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.isfinite(self.nodes)
        return self.nodes[mask], self.weights[mask] / max(self.n_probes, 1)

    @property
    def support(self) -> tuple[float, float]:
        """(smallest, largest) node: estimates of lambda_min and lambda_max."""
        nodes, _ = self._flat()
        return (float(nodes.min()), float(nodes.max())) if nodes.numel() else (math.nan, math.nan)

    @property
    def trace(self) -> float:
        """n * mean_probe sum_k tau_k theta_k: the Hutchinson estimate of tr(A) from the same probes."""
        nodes, weights = self._flat()
        return float(self.n * (weights * nodes).sum())

    def moment(self, power: int) -> float:
        """Estimate of tr(A^p) / n."""
        nodes, weights = self._flat()
        return float((weights * nodes.pow(power)).sum())

    def default_sigma(self) -> float:
        low, high = self.support
        return max(high - low, abs(high), 1e-300) / 200.0

    def density(self, grid: torch.Tensor | None = None, *, sigma: float | None = None,
                n_points: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian-smoothed density on a grid; integrates to ~1.

        phi_sigma(t) = mean_probe sum_k tau_k N(t; theta_k, sigma^2) (Lin, Saad & Yang 2016, eq. 3.2).

        Args:
            grid: points t (default: n_points spanning the support +- 5 sigma).
            sigma: kernel width (default: 1/200 of the spectral range).

        Returns:
            (grid, density), float64 CPU tensors.
        """
        nodes, weights = self._flat()
        nodes, weights = nodes.cpu().double(), weights.cpu().double()
        sigma = self.default_sigma() if sigma is None else float(sigma)
        if grid is None:
            low, high = self.support
            grid = torch.linspace(low - 5 * sigma, high + 5 * sigma, n_points, dtype=torch.float64)
        grid = grid.cpu().double()
        z = (grid.unsqueeze(1) - nodes.unsqueeze(0)) / sigma
        values = (weights.unsqueeze(0) * torch.exp(-0.5 * z * z)).sum(1) / (sigma * math.sqrt(2 * math.pi))
        return grid, values

    def cumulative(self, grid: torch.Tensor) -> torch.Tensor:
        """Estimated fraction of eigenvalues <= t (no smoothing parameter)."""
        nodes, weights = self._flat()
        grid = grid.cpu().double()
        return ((nodes.cpu().double().unsqueeze(0) <= grid.unsqueeze(1)) * weights.cpu().double()).sum(1)

    def to_frame(self) -> "Any":
        """One row per (probe, node): probe, node, weight."""
        import pandas as pd

        rows = []
        for p in range(self.n_probes):
            for k in range(self.n_steps):
                value = float(self.nodes[p, k])
                if math.isfinite(value):
                    rows.append({"probe": p + 1, "node": value, "weight": float(self.weights[p, k])})
        return pd.DataFrame(rows, columns=["probe", "node", "weight"])


@dataclass(frozen=True)
class TraceEstimate:
    """A Hutchinson trace estimate.

    Attributes:
        trace: mean of z^T A z over the probes.
        std_error: sample standard deviation / sqrt(probes) (NaN for one probe).
        samples: (probes,) the individual z^T A z.
    """

    trace: float
    std_error: float
    samples: torch.Tensor
    n_matvec: int
    elapsed_s: float
    status: SolveStatus
    seed: int | None = None
    message: str = ""
    history: tuple[IterationRecord, ...] = field(default=(), repr=False)

    @property
    def n_probes(self) -> int:
        return int(self.samples.numel())

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """Normal-approximation confidence interval (95 % by default)."""
        return self.trace - z * self.std_error, self.trace + z * self.std_error


class _Progress:
    """Emits analysis records to a tracker and turns StopSolve into a stop flag."""

    def __init__(self, name: str, operator: LinearOperator, tracker: Tracker | None, total: int, k: int,
                 extras: dict[str, Any]) -> None:
        self.name = name
        self.operator = operator
        self.tracker: Tracker = tracker if tracker is not None else NullTracker()
        self.history: list[IterationRecord] = []
        self.stop_reason: str | None = None
        self.t0 = time.perf_counter()
        self.tracker.on_start(SolveStart(solver=name, n=operator.shape[0], k=k, which="BE", tol=0.0, max_iter=total,
                                         dtype=str(operator.dtype).replace("torch.", ""), device=str(operator.device),
                                         extras=extras))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def record(self, iteration: int, values: torch.Tensor, errors: torch.Tensor, n_matvec: int,
               extras: dict[str, float], all_values: torch.Tensor | None = None, n_converged: int = 0) -> bool:
        record = IterationRecord(solver=self.name, iteration=iteration, ritz_values=values.detach().cpu().double(),
                                 residual_norms=errors.detach().cpu().double(), residuals_estimated=True,
                                 orthogonality_loss=None, n_converged=n_converged, n_matvec=n_matvec,
                                 elapsed_s=self.elapsed, extras=extras,
                                 all_ritz_values=None if all_values is None else all_values.detach().cpu().double())
        self.history.append(record)
        try:
            self.tracker.on_iteration(record)
        except StopSolve as stop:
            self.stop_reason = stop.reason
            return True
        return False


def spectral_density(operator: LinearOperator, *, n_probes: int = 8, n_steps: int = 60, seed: int | None = 0,
                     tracker: Tracker | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature estimate of the spectral density of a symmetric operator.

    Args:
        operator: symmetric (n, n) ``LinearOperator``.
        n_probes: Rademacher probe vectors (the variance of the estimate falls as 1/n_probes).
        n_steps: Lanczos steps per probe (m); nodes resolve the spectrum's ends first,
            the bulk needs m of order 50-100 (Ghorbani et al. use 90). Capped at n.
        seed: seed of the probes (a local ``torch.Generator``); None draws fresh entropy.
        tracker: receives one record per probe: ``ritz_values`` = (largest, smallest)
            node so far, ``residual_norms`` = their Lanczos residual estimates
            |beta_m u_mk|, ``extras`` = running trace estimate; ``all_ritz_values`` =
            this probe's nodes. Raising ``StopSolve`` keeps the probes done so far.

    Returns:
        A :class:`SpectralDensity`; ``.density()`` gives the smoothed curve.

    Costs n_probes * n_steps matvecs and O(n * n_steps) memory.

    References:
        Ubaru, Chen & Saad 2017, Algorithm 1; Lin, Saad & Yang 2016.
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"`operator` must be a LinearOperator, got {type(operator).__name__}")
    if isinstance(n_probes, bool) or int(n_probes) < 1:
        raise ValueError(f"`n_probes` must be a positive integer, got {n_probes!r}")
    if isinstance(n_steps, bool) or int(n_steps) < 1:
        raise ValueError(f"`n_steps` must be a positive integer, got {n_steps!r}")
    counted = CountedOperator(operator)
    n = operator.shape[0]
    m = min(int(n_steps), n)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed)) if seed is not None else generator.seed()
    progress = _Progress("slq", counted, tracker, int(n_probes), 2,
                         {"n_probes": int(n_probes), "n_steps": m, "seed": seed})
    nodes = torch.full((int(n_probes), m), math.nan, dtype=torch.float64)
    weights = torch.zeros((int(n_probes), m), dtype=torch.float64)
    done = 0
    top, bottom = -math.inf, math.inf
    top_err, bottom_err = math.inf, math.inf
    for probe in range(int(n_probes)):
        z = rademacher(n, generator, dtype=operator.dtype, device=operator.device)
        alpha, beta, beta_last = lanczos_tridiagonal(counted, z, m)
        T = torch.diag(alpha.cpu().double())
        if beta.numel():
            off = beta.cpu().double()
            T += torch.diag(off, 1) + torch.diag(off, -1)
        theta, U = torch.linalg.eigh(T)
        steps = theta.numel()
        nodes[probe, :steps] = theta
        weights[probe, :steps] = U[0, :].pow(2)
        residual = (float(beta_last) * U[-1, :]).abs()
        if float(theta[-1]) > top:
            top, top_err = float(theta[-1]), float(residual[-1])
        if float(theta[0]) < bottom:
            bottom, bottom_err = float(theta[0]), float(residual[0])
        done = probe + 1
        partial = SpectralDensity(nodes[:done], weights[:done], n, counted.n_matvec, progress.elapsed,
                                  SolveStatus.CONVERGED)
        # "converged" extremes: Lanczos residual estimate at working accuracy, sqrt(eps) max|theta|
        floor = math.sqrt(torch.finfo(operator.dtype).eps) * max(abs(top), abs(bottom))
        stop = progress.record(done, torch.tensor([top, bottom]), torch.tensor([top_err, bottom_err]),
                               counted.n_matvec, {"trace_estimate": partial.trace, "probe": float(done)},
                               all_values=theta, n_converged=int(top_err <= floor) + int(bottom_err <= floor))
        if stop:
            break
    status = SolveStatus.STOPPED if progress.stop_reason is not None else SolveStatus.CONVERGED
    message = "" if progress.stop_reason is None else f"Reason: {progress.stop_reason}."
    return SpectralDensity(nodes[:done].clone(), weights[:done].clone(), n, counted.n_matvec, progress.elapsed,
                           status, seed, message, tuple(progress.history))


def hutchinson_trace(operator: LinearOperator, *, n_probes: int = 100, seed: int | None = 0,
                     rtol: float | None = None, min_probes: int = 10, tracker: Tracker | None = None,
                     block: int = 1) -> TraceEstimate:
    """Hutchinson's stochastic trace estimator with Rademacher probes.

    Args:
        operator: square ``LinearOperator`` (symmetry is not needed).
        n_probes: maximum number of probes.
        seed: seed of the probes (a local ``torch.Generator``).
        rtol: stop early once std_error <= rtol * |trace| (after ``min_probes``).
        min_probes: probes before the early stop is considered (a standard error from
            very few samples is itself unreliable).
        tracker: one record per probe: ``ritz_values`` = (running trace,),
            ``residual_norms`` = (standard error,), ``n_converged`` = 1 once ``rtol`` is met.
            ``StopSolve`` keeps the estimate so far.
        block: probes applied per operator call (``matmat``).

    Returns:
        A :class:`TraceEstimate`.

    References:
        Hutchinson 1989; H. Avron, S. Toledo, "Randomized algorithms for estimating the
        trace of an implicit symmetric positive semi-definite matrix", JACM 58(2), 2011.
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"`operator` must be a LinearOperator, got {type(operator).__name__}")
    if isinstance(n_probes, bool) or int(n_probes) < 1:
        raise ValueError(f"`n_probes` must be a positive integer, got {n_probes!r}")
    if rtol is not None and not (isinstance(rtol, (int, float)) and rtol > 0):
        raise ValueError(f"`rtol` must be a positive number or None, got {rtol!r}")
    counted = CountedOperator(operator)
    n = operator.shape[0]
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed)) if seed is not None else generator.seed()
    progress = _Progress("hutchinson", counted, tracker, int(n_probes), 1, {"n_probes": int(n_probes), "seed": seed})
    samples: list[float] = []
    message = ""
    stopped = False
    while len(samples) < int(n_probes) and not stopped:
        b = min(max(1, int(block)), int(n_probes) - len(samples))
        Z = torch.stack([rademacher(n, generator, dtype=operator.dtype, device=operator.device) for _ in range(b)], 1)
        AZ = counted.matmat(Z) if b > 1 else counted.matvec(Z[:, 0]).unsqueeze(1)
        for value in (Z * AZ).sum(0).cpu().double().tolist():
            samples.append(value)
            mean, err = _mean_se(samples)
            met = rtol is not None and len(samples) >= max(2, min_probes) and err <= rtol * abs(mean)
            if progress.record(len(samples), torch.tensor([mean]), torch.tensor([err]), counted.n_matvec,
                               {"trace_estimate": mean, "std_error": err}, n_converged=int(met)):
                stopped = True
                break
            if met:
                message = f"std_error <= {rtol:g} * |trace| after {len(samples)} probes."
                stopped = True
                break
    mean, err = _mean_se(samples)
    status = SolveStatus.STOPPED if progress.stop_reason is not None else SolveStatus.CONVERGED
    if progress.stop_reason is not None:
        message = f"Reason: {progress.stop_reason}."
    return TraceEstimate(mean, err, torch.tensor(samples, dtype=torch.float64), counted.n_matvec, progress.elapsed,
                         status, seed, message, tuple(progress.history))


def _mean_se(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return math.nan, math.nan
    t = torch.tensor(samples, dtype=torch.float64)
    if t.numel() < 2:
        return float(t.mean()), math.nan
    return float(t.mean()), float(t.std(unbiased=True) / math.sqrt(t.numel()))


def layer_norms(operator: Any, vectors: torch.Tensor, *, by: Literal["parameter", "layer"] = "layer") -> Any:
    """Per-layer (or per-parameter) share of each eigenvector: see ``CurvatureOperator.layer_norms``."""
    if not hasattr(operator, "layer_norms"):
        raise TypeError("`operator` must be a model curvature operator (HessianOperator or GGNOperator)")
    return operator.layer_norms(vectors, by=by)
