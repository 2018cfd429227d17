"""Small dense linear algebra of LOBPCG, on blocks of n-vectors stored as rows.

Layout: the block engine stores every block of n-vectors *transposed*, as a row-major
(b, n) tensor ("rows"): X is kept as ``Xt`` with ``Xt[i]`` the i-th vector. With one MKL
thread the tall-skinny products of LOBPCG run faster that way (X^T Y as ``Xt @ Yt^T``,
X C as ``C^T @ Xt``), selecting vectors is a contiguous row slice and concatenating
blocks a plain memory copy. Operators still receive (n, b) columns: ``apply_rows`` is
the one place that converts.

Here: the operator product in that layout (``apply_rows``), Gram matrices and linear
combinations of row blocks (``gram``, ``combine``), selection of rows (``selection``,
``take_rows``), and the small dense kernels of the Rayleigh-Ritz steps: a float64
``eigh`` (``sym_eigh``), SVQB B-orthonormalization from a Gram matrix (Stathopoulos &
Wu 2002; Duersch, Shao, Yang & Gu 2018, Alg. 4, with dropping: ``svqb_from_gram``,
``transform_rows``) and an orthonormal basis by QR (``orth_basis_of_rows``).
"""

from __future__ import annotations

import numpy as np
import torch

from explorer.operators import LinearOperator

# Sparse operators get blocks of at most this many entries (2 MB in float64) in one product,
# larger ones row by row (see ``apply_rows``).
_SPARSE_BLOCK_MAX = 250_000


def sym_eigh(G: torch.Tensor, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``eigh`` of a small symmetric matrix in float64 (cheap; robust for float32 problems)."""
    G64 = G.to("cpu", torch.float64)
    values, vectors = torch.linalg.eigh(0.5 * (G64 + G64.T))
    if largest:
        values, vectors = values.flip(0), vectors.flip(1)
    return values, vectors


def apply_rows(op: LinearOperator, Yt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(op @ Yt^T)^T as a contiguous (b, n) tensor (written into ``out`` when given).

    Picks the cheapest way to apply ``op`` to rows (CPU, one thread):

    * a scipy CSR matrix on the CPU (``op.rows_kernel``) runs its SpMV kernel on each row,
      writing straight into ``out`` (``LinearOperator.matvecs_into``): no transposing copies,
      the same numbers;
    * another sparse matrix is applied row by row (one SpMV per contiguous vector) when the
      block is larger than ``_SPARSE_BLOCK_MAX`` entries, where one block product plus the two
      transposition copies it needs in this layout is slower; a smaller block (it fits in
      cache) gets one product;
    * other operators always get one block product (dense GEMM, or a batched matrix-free
      product such as an HVP). The transpositions around it are numpy's copies
      (``_copy_transposed``), and a sparse matrix gets its input C-ordered: scipy's CSR kernel
      would copy an F-ordered (n, b) view itself, more slowly.
    """
    if op.rows_kernel:  # scipy's CSR kernel row by row, into ``out``: no transposing copies
        if out is None:
            out = torch.empty_like(Yt)
        if op.matvecs_into(Yt, out):
            return out
    if op.kind == "sparse" and Yt.numel() > _SPARSE_BLOCK_MAX:
        if out is None:
            out = torch.empty_like(Yt)
        for i in range(Yt.shape[0]):
            out[i] = op.matvec(Yt[i])
        return out
    if out is None:
        out = torch.empty_like(Yt)
    Y = Yt.T
    if op.kind == "sparse" and Yt.device.type == "cpu":
        # scipy's CSR kernel wants C-ordered (n, b) columns and copies an F-ordered view itself
        # (numpy's ravel), more slowly than numpy's transposing copy.
        Y = _transposed(Yt)
    _copy_transposed(out, op.matmat(Y))
    return out


def _transposed(Mt: torch.Tensor) -> torch.Tensor:
    """``Mt.T`` as a C-ordered tensor (on the CPU numpy's transposing copy, faster than torch's)."""
    M = torch.empty(Mt.shape[1], Mt.shape[0], dtype=Mt.dtype, device=Mt.device)
    _copy_transposed(M, Mt)
    return M


def _copy_transposed(out: torch.Tensor, M: torch.Tensor) -> None:
    """``out[...] = M.T`` (numpy's copy on the CPU where it applies, see ``_transposed``)."""
    if (out.device.type == "cpu" and M.device.type == "cpu" and M.dtype == out.dtype and not M.requires_grad
            and out.dtype in (torch.float64, torch.float32)):
        np.copyto(out.numpy(), M.numpy().T)
    else:
        out.copy_(M.T)


def svqb_from_gram(G: torch.Tensor, drop_tol: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The SVQB transform from the Gram matrix G = U^T B U (Stathopoulos & Wu 2002;
    Duersch et al. 2018, Alg. 4, with dropping).

    Returns (keep, T, conditioning) such that ``U[:, keep] @ T`` has B-orthonormal columns:
    columns are scaled to unit B-norm, the scaled Gram matrix is diagonalized, and directions
    whose eigenvalue is below ``drop_tol * max`` (linearly dependent to working precision) are
    dropped, so T may have fewer columns. Zero columns are removed first. ``conditioning``:
    smallest / largest eigenvalue of the scaled Gram matrix (0 when columns were dropped).
    """
    G64 = G.to("cpu", torch.float64)
    d = G64.diagonal()
    keep = d > torch.finfo(G.dtype).tiny * 1e4
    if not bool(keep.all()):
        G64, d = G64[keep][:, keep], d[keep]
    if d.numel() == 0:
        return keep, torch.zeros(0, 0, dtype=G.dtype, device=G.device), 0.0
    scale = d.rsqrt().unsqueeze(1)
    H = scale * G64 * scale.T
    E, Z = torch.linalg.eigh(0.5 * (H + H.T))
    # E ascends, so the directions kept (E > drop_tol * max) are the last ones: a slice.
    values = E.tolist()
    threshold = drop_tol * values[-1]
    first = next((i for i, e in enumerate(values) if e > threshold), len(values))
    # C order, as the boolean selection it replaces made it: the GEMMs it enters round the same way.
    T = ((scale * Z[:, first:]) * E[first:].rsqrt().unsqueeze(0)).contiguous()
    return keep, T.to(G.device, G.dtype), values[0] / values[-1] if values[0] > 0 else 0.0


def transform_rows(Ut: torch.Tensor, keep: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Rows of ``U[:, keep] @ T`` from the rows Ut of U."""
    if not bool(keep.all()):
        Ut = Ut[keep]
    return T.T @ Ut


def orth_basis_of_rows(M: torch.Tensor, columns: int) -> torch.Tensor:
    """An orthonormal (r, columns) basis of the column space of M (r, c) via QR (c >= columns)."""
    Q = torch.linalg.qr(M.to(torch.float64)).Q
    return Q[:, :columns]


def selection(mask: torch.Tensor) -> slice | torch.Tensor:
    """Indices where ``mask`` is True: a slice when they are contiguous (a free view), else indices.

    The locked vectors are usually the leading ones, so the active set is usually a range.
    """
    idx = [i for i, flag in enumerate(mask.tolist()) if flag]
    if idx and idx[-1] - idx[0] + 1 == len(idx):
        return slice(idx[0], idx[-1] + 1)
    return torch.tensor(idx, dtype=torch.long, device=mask.device)


def take_rows(Mt: torch.Tensor, sel: slice | torch.Tensor) -> torch.Tensor:
    """The rows ``sel`` (a ``selection``) of Mt: a view for a slice, a gather otherwise."""
    return Mt[sel] if isinstance(sel, slice) else Mt.index_select(0, sel)


def gram(left: list[torch.Tensor], right: list[torch.Tensor]) -> torch.Tensor:
    """The symmetric [L_0; ...; L_b] [R_0; ...; R_b]^T (blocks given as rows) in float64.

    Only the upper blocks are multiplied; the lower ones are their mirrors.
    """
    offsets = [0]
    for block in left:
        offsets.append(offsets[-1] + block.shape[0])
    G = torch.zeros(offsets[-1], offsets[-1], dtype=torch.float64)
    for i, Li in enumerate(left):
        for j in range(i, len(right)):
            block = (Li @ right[j].T).to("cpu", torch.float64)
            G[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] = block
            if j != i:
                G[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] = block.T
    return 0.5 * (G + G.T)


def combine(blocks: list[torch.Tensor], C: torch.Tensor) -> torch.Tensor:
    """Rows of ``[B_0 ... B_b] @ C`` from the rows of the blocks (one GEMM per block)."""
    Ct = C.to(blocks[0].device, blocks[0].dtype).T.contiguous()  # a contiguous left factor: faster GEMMs
    row = blocks[0].shape[0]
    out = Ct[:, :row] @ blocks[0]
    for block in blocks[1:]:
        out.addmm_(Ct[:, row:row + block.shape[0]], block)
        row += block.shape[0]
    return out
