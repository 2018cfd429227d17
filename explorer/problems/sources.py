"""Where a problem comes from, as a small hashable value: a sample, a generator call, or an upload.

``ProblemSource`` is the cache key of a loaded problem (uploads are keyed by the
SHA-256 of their bytes), a label for tables, and the input of the reproduce-snippet
generator (``explorer.runs.snippet``). ``load_problem`` turns a source into an
``explorer.problems.Problem``; ``reference_spectrum`` gives every exact eigenvalue
(analytic when the problem knows them, dense eigh for n <= 4000, else None).
Pure: no Streamlit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import torch

__all__ = ["ProblemSource", "load_problem", "reference_spectrum", "digest", "REFERENCE_MAX_N", "REFERENCE_MAX_MN"]

REFERENCE_MAX_N = 4000


def digest(data: bytes) -> str:
    """SHA-256 hex digest of uploaded bytes (the cache key of an upload)."""
    return hashlib.sha256(data).hexdigest()


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class ProblemSource:
    """How to get a problem again.

    kind: "sample" (``name`` = sample name), "generate" (``name`` = generator, ``params``
    its arguments) or "upload" (``name`` = file name, ``digest`` of the bytes, optional
    ``b_name``/``b_digest`` for B, ``symmetrize`` for (A + A^T)/2).
    """

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    digest: str = ""
    b_name: str = ""
    b_digest: str = ""
    symmetrize: bool = False

    @classmethod
    def sample(cls, name: str) -> "ProblemSource":
        return cls("sample", name)

    @classmethod
    def generated(cls, name: str, params: Mapping[str, Any]) -> "ProblemSource":
        return cls("generate", name, tuple(sorted((k, _freeze(v)) for k, v in params.items())))

    @classmethod
    def upload(cls, filename: str, data: bytes, *, b_filename: str = "", b_data: bytes | None = None,
               symmetrize: bool = False) -> "ProblemSource":
        return cls("upload", filename, (), digest(data), b_filename if b_data is not None else "",
                   digest(b_data) if b_data is not None else "", bool(symmetrize))

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def label(self) -> str:
        if self.kind == "sample":
            return f"sample {self.name}"
        if self.kind == "generate":
            args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params)
            return f"{self.name}({args})"
        text = f"upload {self.name}"
        if self.b_name:
            text += f" with B = {self.b_name}"
        if self.symmetrize:
            text += " (symmetrized)"
        return text


def load_problem(source: ProblemSource, data: bytes | None = None, b_data: bytes | None = None, *,
                 max_bytes: int | None = None) -> Any:
    """Build the ``Problem`` for ``source`` (uploads need their bytes; ``max_bytes`` bounds them).

    Raises ValueError (``explorer.problems.files.LoadError`` for unreadable files, ``NotSymmetricError``
    for a non-symmetric matrix without ``symmetrize``) or TypeError, each with a clear message.
    """
    if source.kind == "sample":
        from explorer.problems.samples import load_sample

        return load_sample(source.name)
    if source.kind == "generate":
        from explorer.problems import generate

        return generate(source.name, **source.params_dict)
    if source.kind == "upload":
        if data is None:
            raise ValueError(f"the bytes of {source.name!r} are needed to load it again; upload the file again")
        return _load_upload(source, data, b_data, max_bytes)
    raise ValueError(f"unknown problem source kind {source.kind!r}")


def _load_upload(source: ProblemSource, data: bytes, b_data: bytes | None, max_bytes: int | None) -> Any:
    from explorer.problems import files as eio
    from explorer.operators import as_operator
    from explorer.problems import Problem

    loaded = eio.load_matrix(data, source.name, max_bytes=max_bytes)
    if loaded.shape[0] != loaded.shape[1]:
        return _rectangular_upload(source, loaded, b_data)
    operator = as_operator(loaded.data, symmetrize=source.symmetrize, name=source.name)
    B = None
    if b_data is not None:
        loaded_b = eio.load_matrix(b_data, source.b_name or "B.npy", max_bytes=max_bytes)
        B = as_operator(loaded_b.data, name=f"B ({source.b_name})")
        if B.shape != operator.shape:
            raise ValueError(f"B ({source.b_name}) is {B.shape[0]} x {B.shape[1]} but A is "
                             f"{operator.shape[0]} x {operator.shape[1]}; they must have the same size")
        if B.dtype != operator.dtype:
            B = B.to(dtype=operator.dtype)
    layout = "sparse" if loaded.is_sparse else "dense"
    description = (f"Uploaded {layout} matrix `{source.name}` ({loaded.format}, stored as {loaded.dtype}), "
                   f"n = {operator.shape[0]:,}" + (", symmetrized as (A + A\u1d40)/2" if source.symmetrize else "")
                   + (f"; generalized problem with B = `{source.b_name}`" if B is not None else "") + ".")
    params: dict[str, Any] = {"file": source.name}
    if B is not None:
        params["B"] = source.b_name
    if source.symmetrize:
        params["symmetrize"] = True
    return Problem(name=source.name, description=description, operator=operator, eigenvalues=None, B=B,
                   params=params)


def _rectangular_upload(source: ProblemSource, loaded: Any, b_data: bytes | None) -> Any:
    """An uploaded m x n matrix (m != n): an SVD problem for the SVD solvers (singular values unknown)."""
    from explorer.operators import as_rectangular_operator
    from explorer.problems import Problem

    m, n = loaded.shape
    if source.symmetrize:
        raise ValueError(f"`{source.name}` is {m:,} x {n:,}, not square, so (A + A\u1d40)/2 does not exist; uncheck "
                         "Symmetrize: a rectangular matrix is solved for its singular values by the SVD solvers "
                         "(golub_kahan)")
    if b_data is not None:
        raise ValueError(f"`{source.name}` is {m:,} x {n:,}, not square: a generalized problem A x = \u03bb B x needs "
                         "a square A. Remove B to compute the singular values of A instead")
    operator = as_rectangular_operator(loaded.data, name=source.name)
    layout = "sparse" if loaded.is_sparse else "dense"
    description = (f"Uploaded {layout} rectangular matrix `{source.name}` ({loaded.format}, stored as {loaded.dtype}), "
                   f"{m:,} x {n:,}: its singular values (SVD solvers).")
    return Problem(name=source.name, description=description, operator=operator, eigenvalues=None,
                   params={"file": source.name}, kind="svd")


#: Largest min(m, n) and m n for which the singular values of an SVD problem come from a dense SVD.
REFERENCE_MAX_MN = REFERENCE_MAX_N * REFERENCE_MAX_N  # (a dense SVD then costs at most what eigh costs at n = 4000)


def reference_spectrum(problem: Any, max_n: int = REFERENCE_MAX_N) -> torch.Tensor | None:
    """Every exact eigenvalue, ascending float64 CPU: ``problem.eigenvalues`` if known, else dense eigh.

    Dense eigh (with B: the Cholesky-reduced generalized problem) only when
    ``n <= max_n``; None above that or when eigh fails (e.g. B not positive definite).
    An SVD problem (``problem.kind == "svd"``): every singular value instead, ascending (its
    ``singular_values`` when known, else a dense float64 SVD when min(m, n) <= ``max_n`` and
    m n <= ``REFERENCE_MAX_MN``).
    """
    if getattr(problem, "kind", "eigen") == "svd":
        if getattr(problem, "singular_values", None) is not None:
            return problem.singular_values.detach().cpu().double()
        m, n = problem.operator.shape
        if min(m, n) > max_n or m * n > REFERENCE_MAX_MN:
            return None
        try:
            dense = problem.operator.to(device="cpu", dtype=torch.float64).to_dense()
            dense = dense.to_dense() if dense.layout != torch.strided else dense
            return torch.sort(torch.linalg.svdvals(dense)).values
        except (ValueError, TypeError, MemoryError, RuntimeError):
            return None
    if getattr(problem, "eigenvalues", None) is not None:
        return problem.eigenvalues.detach().cpu().double()
    n = problem.operator.shape[0]
    if n > max_n:
        return None
    from explorer.solvers.eigh import eigh

    try:
        result = eigh(problem.operator.to(dtype=torch.float64), n, which="SA", B=problem.B)
    except (ValueError, TypeError, MemoryError, RuntimeError):
        return None
    if result.eigenvalues.numel() != n:
        return None
    return torch.sort(result.eigenvalues.detach().cpu().double()).values
