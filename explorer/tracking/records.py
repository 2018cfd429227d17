"""Per-iteration records: the one thing every solver emits and every view reads.

A record holds only small, detached CPU copies (k values), so a tracker can keep
thousands of them without touching solver memory or the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

__all__ = ["IterationRecord", "SolveStart"]


@dataclass(frozen=True)
class SolveStart:
    """What a tracker learns when a solve begins."""

    solver: str
    n: int  # operator size
    k: int  # number of wanted eigenpairs
    which: str
    tol: float
    max_iter: int
    dtype: str
    device: str
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IterationRecord:
    """One iteration of one solver.

    Attributes:
        solver: registry name of the solver ("lanczos", "lobpcg", ...).
        iteration: 1-based iteration number (the meaning of one iteration is the
            solver's own: a Lanczos step, a LOBPCG block step, a power step).
        ritz_values: (k,) current approximations of the wanted eigenvalues, in the
            order of the final result (``which`` order).
        residual_norms: (k,) ``||A x_i - theta_i B x_i||`` (true) or an estimate
            such as ``|beta_m s_mi|`` for Lanczos; see ``residuals_estimated``.
        residuals_estimated: True when ``residual_norms`` are estimates.
        orthogonality_loss: ``||V^T B V - I||`` (max-abs) of the current basis, or None
            where the method keeps no basis.
        n_converged: how many of the k wanted pairs meet ``tol``.
        n_matvec: operator applications so far (one column = one matvec).
        elapsed_s: seconds since the solve started.
        all_ritz_values: optional (m,) every Ritz value of the current subspace
            (Lanczos "staircase" plots).
        ghost_mask: optional (k,) bool, Ritz values flagged as spurious copies of
            converged ones (Lanczos without re-orthogonalization).
        extras: small scalars a solver wants to expose (e.g. an error estimate).
    """

    solver: str
    iteration: int
    ritz_values: torch.Tensor
    residual_norms: torch.Tensor
    residuals_estimated: bool
    orthogonality_loss: float | None
    n_converged: int
    n_matvec: int
    elapsed_s: float
    all_ritz_values: torch.Tensor | None = None
    ghost_mask: torch.Tensor | None = None
    extras: Mapping[str, float] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """A flat dict (one row per record) for the summary table."""
        return {
            "solver": self.solver,
            "iteration": self.iteration,
            "n_converged": self.n_converged,
            "n_matvec": self.n_matvec,
            "elapsed_s": self.elapsed_s,
            "orthogonality_loss": self.orthogonality_loss,
            "max_residual": float(self.residual_norms.max()) if self.residual_norms.numel() else float("nan"),
            "residuals_estimated": self.residuals_estimated,
            "n_ghosts": int(self.ghost_mask.sum()) if self.ghost_mask is not None else 0,
            **{f"extra_{key}": value for key, value in self.extras.items()},
        }
