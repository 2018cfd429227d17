"""Distributed solves as functions: a matrix split by rows, a Hessian split by data.

``solve_distributed("laplacian_2d:300", "lanczos", 10, which="LA")`` and
``hessian_distributed("model.pt2", "data.safetensors", "lanczos", 5)`` run on every rank
of the process group (``init_from_env`` when no context is given): each rank builds its
share of the operator, the ranks check that they agree on the problem, every rank runs
the registry's solver with the same seed, and only rank 0's tracker sees the records.
A row-sharded Lanczos solve runs on sharded vectors by default (``vectors="auto"``: each
rank keeps its rows of the basis, ``space.ShardedSpace``); everything else on replicated ones.
Each returns a :class:`DistributedOutcome` with the result (eigenvalues and residuals the same
on every rank; with sharded vectors the eigenvectors whole on rank 0 only) and
what this rank spent: time to load, time to solve, the collectives (count, bytes, time)
and memory (its block or shard, its peak resident memory).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from explorer.distributed.context import DistContext, init_from_env
from explorer.distributed.operators import VECTORS, DataParallelOperator, RootTracker, RowShardedOperator
from explorer.distributed.sharding import RowBlock, read_row_block, row_ranges, slice_rows
from explorer.operators import DenseOperator, SparseOperator, check_symmetric
from explorer.solvers.registry import get_solver, solve
from explorer.tracking import EigenResult, Tracker

__all__ = ["SourceSpec", "parse_source", "DistributedOutcome", "row_sharded_operator", "solve_distributed",
           "hessian_distributed", "memory_now"]


@dataclass(frozen=True)
class SourceSpec:
    """A problem named on a command line.

    ``kind``: "generate" (``name`` a generator of ``explorer.problems.GENERATORS``, ``params``
    its given arguments), "file" (``name`` a path to .mtx / .npz / ...) or "sample".
    """

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if self.kind == "generate":
            return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in self.params) + ")"
        return f"{self.kind} {self.name}"


def _value(text: str) -> Any:
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_source(text: str) -> SourceSpec:
    """``"laplacian_2d:300"`` (positional values in the generator's parameter order),
    ``"laplacian_2d:nx=300,ny=200"``, ``"laplacian_2d"`` (its defaults), ``"sample:NAME"``, or a
    path to a matrix file. Parameters not given take the generator function's defaults
    (``laplacian_2d:300`` is the 300 x 300 grid, as ``laplacian_2d(300)``).

    Raises:
        ValueError: an unknown generator or parameter, or a file that does not exist.
    """
    from explorer.problems import GENERATORS

    text = str(text).strip()
    if not text:
        raise ValueError("the problem SOURCE is empty; give a generator such as laplacian_2d:300 or a .mtx/.npz file")
    if text.startswith("sample:"):
        return SourceSpec("sample", text.split(":", 1)[1])
    name, _, args = text.partition(":")
    if name in GENERATORS:
        spec = GENERATORS[name]
        order = [p.name for p in spec.params]
        params: dict[str, Any] = {}
        for position, item in enumerate(a for a in args.split(",") if a.strip()) if args else []:
            if "=" in item:
                key, raw = item.split("=", 1)
                key = key.strip()
            else:
                if position >= len(order):
                    raise ValueError(f"{name} takes at most {len(order)} values ({', '.join(order)}), got {args!r}")
                key, raw = order[position], item
            if key not in order:
                raise ValueError(f"{name} has no parameter {key!r}; it has {order}")
            params[key] = spec.param(key).validate(_value(raw))
        return SourceSpec("generate", name, tuple(params.items()))
    if Path(text).exists():
        return SourceSpec("file", text)
    raise ValueError(f"SOURCE {text!r} is neither a generator ({', '.join(sorted(GENERATORS))}, e.g. "
                     "laplacian_2d:300) nor an existing file (.mtx, .npz, .npy, ...) nor sample:NAME")


def memory_now() -> dict[str, int]:
    """This process's resident memory now and at its peak (bytes), from /proc (Linux) or getrusage."""
    out = {"rss_bytes": 0, "peak_rss_bytes": 0}
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    out["rss_bytes"] = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    out["peak_rss_bytes"] = int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_rss_bytes"] = peak * (1 if os.uname().sysname == "Darwin" else 1024)
    return out


@dataclass
class DistributedOutcome:
    """One rank's outcome of a distributed solve.

    Attributes:
        result: the solver's result (identical on every rank).
        rank, world_size, backend: where it ran.
        problem: a label of the problem.
        reference: exact eigenvalues when the problem knows them (rank 0 of a generated
            problem), in the order of ``result.eigenvalues``; else None.
        stats: load_s, solve_s, collectives (calls, bytes, seconds), exchange_bytes_per_product,
            memory (rss and peak before and after), and the local sizes (block or shard bytes).
    """

    result: EigenResult
    rank: int
    world_size: int
    backend: str
    problem: str
    reference: list[float] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the command line prints with ``--json``."""
        r = self.result
        return {
            "problem": self.problem, "solver": r.solver, "k": len(r.eigenvalues), "which": r.which,
            "status": r.status.value if hasattr(r.status, "value") else str(r.status), "message": r.message,
            "eigenvalues": [float(v) for v in r.eigenvalues.cpu().double()],
            "residual_norms": [float(v) for v in r.residual_norms.cpu().double()],
            "converged": [bool(c) for c in r.converged.cpu()],
            "n_iter": r.n_iter, "n_matvec": r.n_matvec, "elapsed_s": r.elapsed_s,
            "reference": self.reference,
            "distributed": {"world_size": self.world_size, "backend": self.backend, "rank": self.rank,
                            **self.stats},
        }


def _generated_problem(spec: SourceSpec, dtype: torch.dtype) -> Any:
    from explorer.problems import generate

    return generate(spec.name, dtype=dtype, device="cpu", menu_defaults=False, **dict(spec.params))


def _problem_matrix(problem: Any) -> Any:
    if getattr(problem, "B", None) is not None:
        raise ValueError(f"{problem.name} is a generalized problem A x = lambda B x; the distributed solve takes "
                         "standard problems only (no B)")
    operator = problem.operator
    if isinstance(operator, SparseOperator):
        return operator.to_scipy()
    if isinstance(operator, DenseOperator):
        return operator.matrix
    raise ValueError(f"{problem.name}'s operator is {type(operator).__name__}; only sparse and dense matrices can be "
                     "split by rows")


def _row_block(spec: SourceSpec, context: DistContext, dtype: torch.dtype) -> tuple[RowBlock, Any]:
    """This rank's rows and (generated problems) the problem, for its exact eigenvalues."""
    if spec.kind == "file":
        path = Path(spec.name)
        n = _matrix_size(path)  # from the header: each rank's range needs n before any row is read
        start, stop = row_ranges(n, context.world_size)[context.rank]
        return read_row_block(path, start, stop), None
    if spec.kind == "sample":
        from explorer.problems.samples import load_sample

        problem = load_sample(spec.name)
    else:
        problem = _generated_problem(spec, torch.float64)
    matrix = _problem_matrix(problem)
    n = int(matrix.shape[0])
    start, stop = row_ranges(n, context.world_size)[context.rank]
    block = slice_rows(matrix, start, stop)
    nnz = int(matrix.nnz) if hasattr(matrix, "nnz") else int(torch.count_nonzero(matrix))
    del matrix
    fingerprint = {"n": n, "nnz": nnz}
    return RowBlock(block, start, stop, n, nnz, "whole", fingerprint), problem


def _matrix_size(path: Path) -> int:
    """n of the square matrix in ``path`` from its header (no body read)."""
    import io
    import zipfile

    import numpy as np
    import scipy.io

    name = path.name.lower()
    if name.endswith(".mtx"):
        rows, cols = scipy.io.mminfo(str(path))[:2]
        return int(rows)
    if name.endswith(".npz"):
        with zipfile.ZipFile(path) as archive:
            if "shape.npy" in archive.namelist():
                with archive.open("shape.npy") as handle:
                    return int(np.load(io.BytesIO(handle.read()), allow_pickle=False)[0])
            first = archive.namelist()[0]
            with archive.open(first) as handle:
                version = np.lib.format.read_magic(handle)
                shape = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                         else np.lib.format.read_array_header_2_0(handle))[0]
                return int(shape[0])
    if name.endswith(".npy"):
        return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
    from explorer.problems.files import load_matrix

    return int(load_matrix(str(path)).shape[0])


def row_sharded_operator(source: str | SourceSpec, context: DistContext, *, dtype: torch.dtype = torch.float64,
                         check: bool = True, extra_fingerprint: dict[str, Any] | None = None,
                         vectors: str = "replicated") -> tuple[RowShardedOperator, RowBlock, Any]:
    """This rank's :class:`RowShardedOperator` for ``source``, after the agreement check
    (``extra_fingerprint``: solver settings to compare as well) and the symmetry probe (on
    whole vectors), with ``vectors`` "replicated" or "sharded"."""
    spec = parse_source(source) if isinstance(source, str) else source
    block, problem = _row_block(spec, context, dtype)
    if check:
        context.agree({"source": spec.label, "dtype": str(dtype), "world_size": context.world_size,
                       **block.fingerprint, **(extra_fingerprint or {})}, what="problem and solver settings")
    ranges = row_ranges(block.n, context.world_size)
    # nnz counted from the blocks (one all-reduce): a file's header may count one triangle or duplicates
    operator = RowShardedOperator(block.matrix, ranges, context, dtype=dtype)
    if check:
        check_symmetric(operator)  # four products, collective like every product
        operator.reset_count()
    return operator.with_vectors(vectors), block, problem


def _label(spec: SourceSpec, problem: Any) -> str:
    """``laplacian_2d(nx=300, ny=300)`` for a generated problem (its parameters as built), else the spec's label."""
    if spec.kind == "generate" and problem is not None and getattr(problem, "params", None):
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in problem.params.items())
        return f"{spec.name}({shown})"
    if spec.kind == "sample":
        return f"sample {spec.name}"
    return spec.label


def _known(problem: Any, k: int, which: str) -> list[float] | None:
    if problem is None or getattr(problem, "eigenvalues", None) is None:
        return None
    try:
        values = problem.reference(k, which)
    except (ValueError, TypeError):
        return None
    return None if values is None else [float(v) for v in values]


def _reference(problem: Any, result: EigenResult) -> list[float] | None:
    return _known(problem, len(result.eigenvalues), result.which)


def _settings(solver: str, k: int, which: str, tol: float, max_iter: int | None, seed: int | None,
              extras: dict[str, Any]) -> dict[str, Any]:
    return {"solver": solver, "k": k, "which": which, "tol": tol, "max_iter": max_iter, "seed": seed,
            **{f"extra.{key}": repr(value) for key, value in sorted(extras.items())}}


def _run(operator: Any, context: DistContext, solver: str, k: int, which: str, tol: float, max_iter: int | None,
         seed: int | None, tracker: Tracker | None, extras: dict[str, Any]) -> tuple[EigenResult, dict[str, Any]]:
    before = memory_now()
    comm0 = context.comm.as_dict()
    # A Stop belongs to one solve: an earlier one's flag must not stop this one at its first step.
    context.sync.stop_requested, context.sync.stop_reason, context.sync.stop_seen = False, "", False
    start = time.perf_counter()
    space = getattr(operator, "space", None)
    root = RootTracker(context, tracker, space=space)
    result = solve(solver, operator, k, which=which, tol=tol, max_iter=max_iter, seed=seed, tracker=root, **extras)
    if space is not None and root.finished is not None:
        result = root.finished  # eigenvectors gathered on rank 0 (this rank's rows elsewhere)
    solve_s = time.perf_counter() - start
    comm = context.comm.as_dict()
    after = memory_now()
    products = max(result.n_matvec, 1)
    collectives = {"calls": comm["calls"] - comm0["calls"], "bytes": comm["bytes"] - comm0["bytes"],
                   "seconds": comm["seconds"] - comm0["seconds"]}
    stats = {"solve_s": solve_s, "collectives": collectives,
             "collective_s_per_product": collectives["seconds"] / products,
             "exchange_bytes_per_product": operator.exchange_bytes(1),
             "vectors": getattr(operator, "vectors", "replicated"),
             **({"reductions": space.describe()} if space is not None else {}),
             "memory": {"rss_before_solve": before["rss_bytes"], "peak_rss": after["peak_rss_bytes"],
                        "rss_after_solve": after["rss_bytes"]}}
    return result, stats


def _context(context: DistContext | None, backend: str, timeout: float) -> tuple[DistContext, bool]:
    if context is not None:
        return context, False
    return init_from_env(backend, timeout=timeout), True


def solve_distributed(source: str | SourceSpec, solver: str = "lanczos", k: int = 4, *, which: str = "LA",
                      tol: float = 1e-6, max_iter: int | None = None, seed: int | None = 0,
                      dtype: torch.dtype = torch.float64, context: DistContext | None = None,
                      tracker: Tracker | None = None, backend: str = "auto", timeout: float = 120.0,
                      on_problem: Callable[[str, list[float] | None], None] | None = None,
                      vectors: str = "auto", **extras: Any) -> DistributedOutcome:
    """Solve the problem ``source`` with its rows split across the ranks (see the module docstring).

    Args:
        source: ``parse_source`` text (``"laplacian_2d:300"``, a .mtx / .npz path, ``"sample:NAME"``).
        solver, k, which, tol, max_iter, seed, extras: as for ``explorer.solvers.solve``. Lanczos
            gets ``products="recomputed"`` unless told otherwise: the choice it makes for a sparse
            matrix in one process (so the run is that run, bit for bit), because storing the
            products saves few of them on sparse problems and costs restart GEMMs over the
            basis and a second basis of memory (docs/benchmarks.md). LOBPCG keeps storing them
            (``RowShardedOperator.nnz``): there it halves the products, hence the exchanges.
        dtype: float64 (default: the reference comparisons) or float32.
        context: the process group; None starts one from torchrun's environment (and closes it).
        tracker: rank 0's tracker (the others get none).
        backend, timeout: for ``init_from_env`` when no context is given.
        on_problem: called on rank 0 before the solve with the problem's label (a generated
            problem's with all its parameters, as one process labels it) and its k exact
            eigenvalues in ``which`` order when it knows them (else None): for a run store.
        vectors: "sharded" (each rank keeps its rows of every basis vector and the solver's
            inner products are all-reduced: memory per rank falls with the ranks; Lanczos
            only), "replicated" (every rank holds the whole vectors and runs the same solve:
            any solver) or "auto" (default: sharded for Lanczos, replicated otherwise). With
            sharded vectors the eigenvectors are gathered on rank 0 (the other ranks' results
            hold their rows ``stats["local"]["rows"]``); eigenvalues and residual norms (global
            norms, reduced) are the same on every rank.

    Raises:
        ProblemMismatchError, RankFailureError, RanksDivergedError, DistributedSetupError,
        and the solver's and the readers' ValueError / TypeError.
    """
    get_solver(solver)  # unknown names fail before any collective
    vectors = _vectors(vectors, solver)
    if solver == "lanczos":
        extras.setdefault("products", "recomputed")
    context, owned = _context(context, backend, timeout)
    try:
        start = time.perf_counter()
        before = memory_now()
        settings = _settings(solver, k, which, tol, max_iter, seed, extras)
        operator, block, problem = row_sharded_operator(source, context, dtype=dtype, extra_fingerprint=settings,
                                                        vectors=vectors)
        load_s = time.perf_counter() - start
        loaded = memory_now()
        spec = parse_source(source) if isinstance(source, str) else source
        label = _label(spec, problem)
        if on_problem is not None and context.is_root:
            on_problem(label, _known(problem, k, which))
        result, stats = _run(operator, context, solver, k, which, tol, max_iter, seed, tracker, extras)
        stats["load_s"] = load_s
        stats["local"] = {"rows": [block.start, block.stop], "nnz": int(block.matrix.nnz),
                          "block_bytes": operator.block_bytes, "read": block.how,
                          "vector_bytes": (block.stop - block.start if vectors == "sharded" else block.n)
                          * torch.finfo(dtype).bits // 8,
                          "basis_bytes": _basis_bytes(solver, k, extras, block, vectors, dtype)}
        stats["memory"].update({"rss_at_start": before["rss_bytes"], "rss_after_load": loaded["rss_bytes"],
                                "peak_rss_after_load": loaded["peak_rss_bytes"]})
        outcome = DistributedOutcome(result, context.rank, context.world_size, context.backend, label,
                                     _reference(problem, result) if context.is_root else None, stats)
        context.barrier(where="the end of the solve")
        return outcome
    except BaseException as error:
        context.report_failure(error)
        raise
    finally:
        if owned:
            context.close()


def _vectors(vectors: str, solver: str) -> str:
    """``vectors`` resolved for ``solver`` ("auto": sharded for Lanczos); sharded vectors for
    another solver are refused with the fix."""
    if vectors not in ("auto", *VECTORS):
        raise ValueError(f"`vectors` must be one of {['auto', *VECTORS]}, got {vectors!r}")
    if vectors == "auto":
        return "sharded" if solver == "lanczos" else "replicated"
    if vectors == "sharded" and solver != "lanczos":
        raise ValueError(f"{solver} does not run on sharded vectors (only lanczos does: its inner products go "
                         "through explorer.solvers._space); use `--vectors replicated` (vectors=\"replicated\"), "
                         "where every rank holds the whole vectors")
    return vectors


def _basis_bytes(solver: str, k: int, extras: dict[str, Any], block: RowBlock, vectors: str,
                 dtype: torch.dtype) -> int | None:
    """Bytes of this rank's Lanczos basis: max_basis + block_size rows of its vector length
    (None for other solvers)."""
    if solver != "lanczos":
        return None
    from explorer.solvers.lanczos import default_block_size, default_max_basis

    b = extras.get("block_size") or default_block_size(k)
    m = extras.get("max_basis") or default_max_basis(k, b, block.n)
    rows = block.stop - block.start if vectors == "sharded" else block.n
    return int((m + b) * rows * torch.finfo(dtype).bits // 8)


def hessian_distributed(model: Any, data: Any, solver: str = "lanczos", k: int = 4, *, which: str = "LA",
                        tol: float = 1e-4, max_iter: int | None = None, seed: int | None = 0,
                        curvature: str = "hessian", loss: str | None = None, params: Any = None,
                        batch_size: int | None = None, minibatch: int | None = None,
                        dtype: torch.dtype = torch.float32, hvp: str = "double_backward",
                        context: DistContext | None = None, tracker: Tracker | None = None,
                        backend: str = "auto", timeout: float = 120.0, **extras: Any) -> DistributedOutcome:
    """Eigenvalues of a model's loss Hessian (or Gauss-Newton matrix) with the data split across ranks.

    Args:
        model: a .pt2 path or anything ``HessianOperator`` takes; data: a data file path or a Dataset.
        loss: None takes the sample model's loss when ``model`` is a sample file, else cross-entropy.
        The rest as for :func:`solve_distributed` and ``data_parallel_curvature``.
    """
    from explorer.distributed.hessian import data_parallel_curvature
    from explorer.models.loading import load_dataset, load_exported_model

    get_solver(solver)
    context, owned = _context(context, backend, timeout)
    try:
        start = time.perf_counter()
        before = memory_now()
        model_obj = load_exported_model(model) if isinstance(model, (str, Path)) else model
        data_obj = load_dataset(data) if isinstance(data, (str, Path)) else data
        if loss is None:
            loss = _sample_loss(model) or "cross_entropy"
        settings = _settings(solver, k, which, tol, max_iter, seed, extras)
        context.agree(settings, what="solver settings")
        operator = data_parallel_curvature(model_obj, data_obj, context, curvature=curvature, loss=loss,
                                           params=params, batch_size=batch_size, minibatch=minibatch,
                                           seed=seed or 0, dtype=dtype, hvp=hvp)
        shard_samples = len(operator.local.data) if hasattr(operator.local, "data") else None
        del data_obj
        load_s = time.perf_counter() - start
        loaded = memory_now()
        result, stats = _run(operator, context, solver, k, which, tol, max_iter, seed, tracker, extras)
        stats["load_s"] = load_s
        local = operator.local
        stats["local"] = {"samples": shard_samples, "weight": operator.weight, "parameters": operator.shape[0],
                          "shard_bytes": int(sum(x.numel() * x.element_size() + y.numel() * y.element_size()
                                                 for x, y, _ in getattr(local, "_chunks", []))),
                          "vector_bytes": operator.shape[0] * torch.finfo(dtype).bits // 8}
        stats["memory"].update({"rss_at_start": before["rss_bytes"], "rss_after_load": loaded["rss_bytes"],
                                "peak_rss_after_load": loaded["peak_rss_bytes"]})
        label = f"{curvature} of {getattr(model_obj, 'name', 'model')} over {getattr(data, 'name', data)}"
        outcome = DistributedOutcome(result, context.rank, context.world_size, context.backend, label, None, stats)
        context.barrier(where="the end of the solve")
        return outcome
    except BaseException as error:
        context.report_failure(error)
        raise
    finally:
        if owned:
            context.close()


def _sample_loss(model: Any) -> str | None:
    if not isinstance(model, (str, Path)):
        return None
    from explorer.models.samples import MODEL_SAMPLES

    name = Path(model).name
    for sample in MODEL_SAMPLES.values():
        if sample.model_file == name:
            return sample.loss
    return None
