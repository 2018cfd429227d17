"""The dense fallback of ``lobpcg`` for n < 3 k, where LOBPCG's trial subspace [X, W, P]
(3 x block size columns) does not fit: ``torch.linalg.eigh`` of the dense matrix
(``dense_eigenpairs``), reported through the same monitor with one record and a note.
"""

from __future__ import annotations

import torch

from explorer.solvers._common import Monitor, Validated, residual_threshold, select_order, true_residual_norms
from explorer.solvers.eigh import dense_eigenpairs
from explorer.tracking.results import EigenResult, SolveStatus


def dense_fallback(v: Validated, monitor: Monitor, note: str) -> EigenResult:
    """The k wanted pairs from dense ``eigh``, with true residuals; ``note`` opens the message.
    BREAKDOWN (no pairs) when ``eigh`` fails."""
    op = v.operator
    n = op.shape[0]
    status, message = SolveStatus.CONVERGED, note
    try:
        values, vectors = dense_eigenpairs(op, v.B)
    except torch.linalg.LinAlgError as err:
        empty = torch.zeros(0, dtype=op.dtype)
        monitor.record(1, empty, empty, estimated=False, n_converged=0)
        return monitor.finish(eigenvalues=empty, eigenvectors=torch.zeros(n, 0, dtype=op.dtype),
                              residual_norms=empty, converged=torch.zeros(0, dtype=torch.bool), n_iter=1,
                              status=SolveStatus.BREAKDOWN, message=f"{note} {err}")
    order = select_order(values, v.which)[: v.k]
    values, vectors = values[order], vectors[:, order]
    residuals = true_residual_norms(op, vectors, values, v.B)
    converged = residuals <= residual_threshold(values, v.tol, float(values.abs().max()))
    monitor.record(1, values, residuals, estimated=False, n_converged=int(converged.sum()))
    if not bool(converged.all()):
        status = SolveStatus.MAX_ITER
    return monitor.finish(eigenvalues=values, eigenvectors=vectors, residual_norms=residuals, converged=converged,
                          n_iter=1, status=status, message=message)
