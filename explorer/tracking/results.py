"""One result type for every eigensolver, with a status that carries its message."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from explorer.tracking.records import IterationRecord

__all__ = ["SolveStatus", "PairCounts", "EigenResult", "SingularResult", "SVDResult", "ConvergenceError"]


class SolveStatus(Enum):
    """How a solve ended. ``status.message`` is a sentence for people."""

    CONVERGED = "converged"
    MAX_ITER = "max_iter reached"
    STOPPED = "stopped"
    BREAKDOWN = "breakdown"

    @property
    def message(self) -> str:
        return _STATUS_MESSAGES[self]

    @property
    def ok(self) -> bool:
        return self is SolveStatus.CONVERGED


_STATUS_MESSAGES = {
    SolveStatus.CONVERGED: "Every wanted pair met the tolerance.",
    SolveStatus.MAX_ITER: (
        "The iteration limit was reached before every wanted pair met the tolerance. "
        "Raise `max_iter`, loosen `tol`, or try a solver that suits the spectrum better."
    ),
    SolveStatus.STOPPED: "The solve was stopped before it finished; the partial result is kept.",
    SolveStatus.BREAKDOWN: (
        "The method broke down (for example an exactly invariant subspace or a failed "
        "Cholesky factorization); the partial result is kept."
    ),
}


class PairCounts:
    """``k`` and ``n_converged`` of any result that holds ``eigenvalues`` and ``converged``."""

    eigenvalues: torch.Tensor
    converged: torch.Tensor

    @property
    def k(self) -> int:
        return int(self.eigenvalues.numel())

    @property
    def n_converged(self) -> int:
        return int(self.converged.sum())


@dataclass(frozen=True)
class EigenResult(PairCounts):
    """Eigenpairs of a symmetric (or symmetric-definite) problem.

    Attributes:
        eigenvalues: (k,) in ``which`` order (LA: descending, SA: ascending,
            LM: by descending magnitude).
        eigenvectors: (n, k) columns, like ``torch.linalg.eigh``.
        residual_norms: (k,) true ``||A x - lambda x||`` at the end (unit x); with a B,
            ``||A x - lambda B x|| / ||B x||`` (see ``explorer.solvers._common.true_residual_norms``).
        converged: (k,) bool, residual below the tolerance.
        n_iter: iterations performed.
        n_matvec: operator applications (one column = one matvec).
        elapsed_s: wall time of the solve.
        status: how it ended; ``message`` adds the solver's own reason.
        solver: registry name.
        history: every per-iteration record (small CPU copies).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residual_norms: torch.Tensor
    converged: torch.Tensor
    n_iter: int
    n_matvec: int
    elapsed_s: float
    status: SolveStatus
    solver: str
    message: str = ""
    which: str = "LA"
    tol: float = 0.0
    history: tuple["IterationRecord", ...] = field(default=(), repr=False)

    @property
    def status_message(self) -> str:
        """The status sentence followed by the solver's own reason, if any."""
        return f"{self.status.message} {self.message}".strip()

    def raise_for_status(self) -> "EigenResult":
        """Raise :class:`ConvergenceError` (carrying this result) unless converged."""
        if self.status is not SolveStatus.CONVERGED:
            raise ConvergenceError(self)
        return self

    def to_frame(self, reference: torch.Tensor | None = None) -> "pd.DataFrame":
        """One row per eigenpair; with ``reference`` (k,) adds absolute/relative error."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "index": range(self.k),
                "eigenvalue": self.eigenvalues.detach().cpu().double().numpy(),
                "residual_norm": self.residual_norms.detach().cpu().double().numpy(),
                "converged": self.converged.detach().cpu().numpy().astype(bool),
            }
        )
        if reference is not None:
            ref = reference.detach().cpu().double().numpy()[: self.k]
            frame["reference"] = list(ref) + [float("nan")] * (self.k - len(ref))
            frame["abs_error"] = (frame["eigenvalue"] - frame["reference"]).abs()
            frame["rel_error"] = frame["abs_error"] / frame["reference"].abs().clip(lower=1e-300)
        return frame


@dataclass(frozen=True)
class SingularResult(EigenResult):
    """Singular triplets ``A v_i = sigma_i u_i``, ``A^T u_i = sigma_i v_i`` from a registry SVD solver.

    An :class:`EigenResult` (so the app, the history, the trackers and ``raise_for_status``
    treat it like any other solve) whose ``eigenvalues`` are the singular values in ``which``
    order (LA: descending, SA: ascending) and whose ``eigenvectors`` are the right singular
    vectors V (n, k); ``left_vectors`` holds U (m, k). ``residual_norms`` are the true
    ``sqrt(||A v - sigma u||^2 + ||A^T u - sigma v||^2)`` (unit u, v): the residual of the pair
    ``([u; v], sigma)`` of the symmetric augmented matrix ``[[0, A], [A^T, 0]]``, so the
    eigenvalue bounds carry over (some singular value lies within it of sigma).
    """

    left_vectors: torch.Tensor = field(default=None, repr=False)  # type: ignore[assignment]  # (m, k)

    @property
    def singular_values(self) -> torch.Tensor:
        return self.eigenvalues

    @property
    def U(self) -> torch.Tensor:
        return self.left_vectors

    @property
    def V(self) -> torch.Tensor:
        return self.eigenvectors

    @property
    def Vh(self) -> torch.Tensor:
        return self.eigenvectors.T

    def to_frame(self, reference: torch.Tensor | None = None) -> "pd.DataFrame":
        """One row per triplet (``singular_value``, ``residual_norm``, ``converged``; with
        ``reference`` (k,), the exact singular values, their absolute and relative errors)."""
        return super().to_frame(reference).rename(columns={"eigenvalue": "singular_value"})


@dataclass(frozen=True)
class SVDResult:
    """Top-k singular triplets ``A ~= U diag(S) Vh`` (randomized SVD)."""

    U: torch.Tensor  # (m, k)
    S: torch.Tensor  # (k,) descending
    Vh: torch.Tensor  # (k, n)
    error_estimate: float  # a-posteriori estimate of ||A - U S Vh|| (spectral)
    n_iter: int
    n_matvec: int
    elapsed_s: float
    status: SolveStatus
    solver: str = "randomized_svd"
    message: str = ""
    history: tuple["IterationRecord", ...] = field(default=(), repr=False)


class ConvergenceError(RuntimeError):
    """Raised by ``EigenResult.raise_for_status``; ``.result`` keeps the partial result."""

    def __init__(self, result: EigenResult) -> None:
        super().__init__(f"{result.solver}: {result.status.value}: {result.status_message}")
        self.result = result
