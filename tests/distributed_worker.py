"""One rank of the distributed tests (tests/test_distributed.py starts 2 or 4 of these).

    python tests/distributed_worker.py SCENARIO OUT_DIR [ARGS...]

Writes ``OUT_DIR/rank<r>.json`` (what the test checks) and exits 0, or 3 with the message
on stderr when the run failed with a DistributedError. Scenarios:

* ``suite MATRIX_DIR full|lite``: in one process group, one after the other: solves of a
  generated problem, an .npz file and an .mtx file (Lanczos with recomputed products; with
  ``full`` also Lanczos with stored products, a compressed .npz and LOBPCG), the data-parallel
  Hessian of the sample MLP (products against given vectors, top eigenvalues; ``full``: the
  Gauss-Newton products too), a Stop from rank 0's tracker, mismatched problems, and a rank
  whose input vector drifts; all of these on replicated vectors (the one-process path, bit for
  bit). Then Lanczos on sharded vectors: a solve (rank 0 checks the gathered eigenvectors'
  residuals against the whole matrix; ``full``: stored products and full
  re-orthogonalization too), a Stop, and LOBPCG's refusal.
* ``kill RANK PRODUCT``: rank RANK SIGKILLs itself at its PRODUCT-th product.
* ``hang RANK PRODUCT SECONDS``: rank RANK sleeps SECONDS in its PRODUCT-th product.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)

from explorer.distributed import (  # noqa: E402
    DistributedError,
    ProblemMismatchError,
    RanksDivergedError,
    RowShardedOperator,
    init_from_env,
    solve_distributed,
)
from explorer.tracking import NullTracker, StopSolve  # noqa: E402

TIMEOUT = float(os.environ.get("EXPLORER_TEST_TIMEOUT", "30"))


def _solve(context, source, solver, k, which, vectors="replicated", **extras):
    outcome = solve_distributed(source, solver, k, which=which, tol=1e-8, seed=0, context=context, vectors=vectors,
                                **extras)
    r = outcome.result
    out = {"eigenvalues": r.eigenvalues.tolist(), "n_matvec": r.n_matvec, "n_iter": r.n_iter,
           "status": r.status.value, "reference": outcome.reference, "stats": outcome.stats,
           "residual_norms": r.residual_norms.tolist(), "vector_rows": r.eigenvectors.shape[0]}
    if vectors == "sharded" and context.is_root and source.startswith("laplacian_2d:"):
        # the gathered eigenvectors against the whole matrix, in one process
        from explorer.problems import laplacian_2d

        A = laplacian_2d(int(source.split(":")[1])).operator.to_scipy()
        X = r.eigenvectors.numpy()
        R = A @ X - X * r.eigenvalues.numpy()
        out["vector_residuals"] = [float(v) for v in (R ** 2).sum(axis=0) ** 0.5]
        out["vector_norms"] = [float(v) for v in (X ** 2).sum(axis=0) ** 0.5]
    return out


class _StopAt(NullTracker):
    def __init__(self, iteration: int) -> None:
        self.iteration, self.seen = iteration, 0

    def on_iteration(self, record) -> None:
        self.seen += 1
        if record.iteration >= self.iteration:
            raise StopSolve("test stop")


def suite(context, matrix_dir: Path, full: bool) -> dict:
    out: dict = {"seconds": {}}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        out["seconds"][name] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    out["generated_recomputed"] = _solve(context, "laplacian_2d:30", "lanczos", 6, "LA", products="recomputed")
    out["npz"] = _solve(context, str(matrix_dir / "graph.npz"), "lanczos", 5, "LA", products="recomputed")
    out["mtx"] = _solve(context, str(matrix_dir / "graph.mtx"), "lanczos", 5, "LA", products="recomputed")
    if full:
        out["generated"] = _solve(context, "laplacian_2d:30", "lanczos", 6, "SA")
        out["npz_compressed"] = _solve(context, str(matrix_dir / "graph_compressed.npz"), "lanczos", 5, "LA",
                                       products="recomputed")
        out["lobpcg"] = _solve(context, "laplacian_2d:30", "lobpcg", 4, "SA")
    lap("matrices")

    # Data-parallel Hessian: products against the vectors the test gave, and the top eigenvalues.
    from explorer.distributed.hessian import data_parallel_curvature
    from explorer.models import load_dataset, load_exported_model
    from explorer.solvers import solve

    models = ROOT / "sample_data" / "models"
    model, data = load_exported_model(models / "mlp.pt2"), load_dataset(models / "mlp_data.safetensors")
    H = data_parallel_curvature(model, data, context, loss="cross_entropy", dtype=torch.float64)
    V = torch.load(matrix_dir / "hessian_vectors.pt")
    out["hessian_products"] = H.matmat(V).tolist()
    if full:
        G = data_parallel_curvature(model, data, context, curvature="ggn", loss="cross_entropy", dtype=torch.float64)
        out["ggn_products"] = G.matmat(V).tolist()
    top = solve("lanczos", H, 5, which="LA", tol=1e-8, seed=0)
    out["hessian_top"] = {"eigenvalues": top.eigenvalues.tolist(), "n_matvec": top.n_matvec,
                          "samples": len(H.local.data), "weight": H.weight}
    lap("hessian")

    # A Stop on rank 0 ends every rank, at the same iteration.
    tracker = _StopAt(3) if context.is_root else None
    outcome = solve_distributed("laplacian_2d:30", "lanczos", 4, which="LA", tol=1e-12, seed=0, context=context,
                                tracker=tracker, ritz_every=1)  # a record per step: the stop's step is known
    out["stop"] = {"status": outcome.result.status.value, "n_iter": outcome.result.n_iter,
                   "records": len(outcome.result.history), "tracker_calls": tracker.seen if tracker else None}

    # Mismatched problems and settings: every rank raises, naming the field; the group stays usable.
    for name, source, k in (("mismatch_source", f"laplacian_2d:{30 + context.rank}", 4),
                            ("mismatch_k", "laplacian_2d:30", 4 + context.rank)):
        try:
            solve_distributed(source, "lanczos", k, context=context)
            out[name] = "no error"
        except ProblemMismatchError as error:
            out[name] = str(error)

    # One rank's input drifts: every rank raises RanksDivergedError at that product.
    from explorer.distributed.sharding import row_ranges, slice_rows
    from explorer.problems import laplacian_2d

    A = laplacian_2d(20).operator.to_scipy()
    start, stop = row_ranges(A.shape[0], context.world_size)[context.rank]
    op = RowShardedOperator(slice_rows(A, start, stop), row_ranges(A.shape[0], context.world_size), context)
    x = torch.ones(A.shape[0], dtype=torch.float64)
    op.matvec(x)
    try:
        op.matvec(x * (1.0 + 1e-9 * context.rank))
        out["diverged"] = "no error"
    except RanksDivergedError as error:
        out["diverged"] = str(error)
    out["after_divergence"] = op.matvec(x).sum().item()  # the group still works
    lap("failures")

    # Sharded vectors: each rank keeps its rows of the basis; inner products are all-reduced.
    out["sharded"] = _solve(context, "laplacian_2d:30", "lanczos", 6, "LA", vectors="sharded")
    if full:
        out["sharded_stored"] = _solve(context, "laplacian_2d:30", "lanczos", 6, "SA", vectors="sharded",
                                       products="stored")
        out["sharded_full"] = _solve(context, "laplacian_2d:30", "lanczos", 6, "LA", vectors="sharded",
                                     reorthogonalization="full")
    tracker = _StopAt(3) if context.is_root else None
    outcome = solve_distributed("laplacian_2d:30", "lanczos", 4, which="LA", tol=1e-12, seed=0, context=context,
                                tracker=tracker, ritz_every=1, vectors="sharded")
    out["sharded_stop"] = {"status": outcome.result.status.value, "n_iter": outcome.result.n_iter,
                           "tracker_calls": tracker.seen if tracker else None}
    try:
        solve_distributed("laplacian_2d:30", "lobpcg", 4, context=context, vectors="sharded")
        out["sharded_lobpcg"] = "no error"
    except ValueError as error:
        out["sharded_lobpcg"] = str(error)
    lap("sharded")
    return out


def _sabotage(rank: int, product: int, action) -> None:
    """Make rank ``rank`` do ``action`` at its ``product``-th product (patching the local kernel)."""
    if int(os.environ["RANK"]) != rank:
        return
    original = RowShardedOperator._local_into
    calls = {"n": 0}

    def local_into(self, X, out):
        calls["n"] += 1
        if calls["n"] == product:
            action()
        return original(self, X, out)

    RowShardedOperator._local_into = local_into


def main() -> int:
    scenario, out_dir = sys.argv[1], Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    if scenario == "kill":
        _sabotage(int(sys.argv[3]), int(sys.argv[4]), lambda: os.kill(os.getpid(), signal.SIGKILL))
    elif scenario == "hang":
        _sabotage(int(sys.argv[3]), int(sys.argv[4]), lambda: time.sleep(float(sys.argv[5])))
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # under torchrun: as the command line does
        from explorer.cli.distributed import on_sigterm

        signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    try:
        context = init_from_env("gloo", timeout=TIMEOUT, heartbeat_s=0.5)
        with context:
            if scenario == "suite":
                result = suite(context, Path(sys.argv[3]), full=sys.argv[4] == "full")
            else:
                result = _solve(context, "laplacian_2d:40", "lanczos", 6, "LA")
        status = 0
    except DistributedError as error:
        result = {"error": type(error).__name__, "message": str(error)}
        print(f"rank {rank}: error: {error}", file=sys.stderr, flush=True)
        status = 3
    result["seconds_after_start"] = time.monotonic() - started
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
