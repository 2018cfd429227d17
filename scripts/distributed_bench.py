"""Time and memory per rank of the distributed solves at 1, 2 and 4 processes (docs/benchmarks.md).

    python scripts/distributed_bench.py                 # every case at 1, 2, 4 ranks; a markdown table
    python scripts/distributed_bench.py --cases exchange --ranks 1 2 --json out.json

Cases (each a fresh group of ranks started by ``explorer.distributed.launch.launch_local``,
the variables torchrun sets, gloo on localhost):

* ``lanczos``: ``laplacian_2d:300`` (n = 90 000) read per rank from an uncompressed .npz,
  Lanczos k = 10 LA, tol 1e-6, float64: the acceptance check's problem.
* ``memory``: ``laplacian_2d:1000`` (n = 10^6, 5 M nonzeros) from an .npz, Lanczos k = 4 with
  ``max_iter`` 10: memory per rank (the CSR block, the replicated basis, peak RSS), not convergence.
* ``exchange``: 40 products of the n = 10^6 row-sharded operator: the local SpMV, the all-gather
  (bytes and time), per product.
* ``hessian``: the sample MLP's Hessian (1732 parameters, 256 samples) data-parallel, Lanczos
  k = 5 LA, tol 1e-4, float32.

``--ranks 0`` runs a case in this process without any process group (the plain single-process
operators), the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = ("lanczos", "memory", "exchange", "hessian")


def _matrix_file(directory: Path, nx: int) -> Path:
    import scipy.sparse as sp

    from explorer.problems import laplacian_2d

    path = directory / f"laplacian2d_{nx}.npz"
    if not path.exists():
        sp.save_npz(path, laplacian_2d(nx).operator.to_scipy(), compressed=False)
    return path


class _Start:
    """Keeps the solver's start extras (max_basis, block_size, products) for the basis size."""

    def __init__(self) -> None:
        self.extras: dict = {}

    def on_start(self, start) -> None:  # noqa: ANN001
        self.extras = dict(start.extras)

    def on_iteration(self, record) -> None:  # noqa: ANN001
        pass

    def on_finish(self, result) -> None:  # noqa: ANN001
        pass


def _basis_bytes(extras: dict, n: int, itemsize: int) -> int:
    m, b = int(extras.get("max_basis", 0)), int(extras.get("block_size", 1))
    copies = 2 if extras.get("products") == "stored" else 1
    return copies * (m + b) * n * itemsize


def rank_main(case: str, directory: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from explorer.distributed import DistContext, init_from_env, memory_now, solve_distributed
    from explorer.distributed.solve import hessian_distributed

    distributed = "RANK" in os.environ
    context = init_from_env("gloo", timeout=300) if distributed else DistContext.local()
    out: dict = {"rank": context.rank, "world_size": context.world_size if distributed else 0}
    with context:
        if case in ("lanczos", "memory"):
            path = _matrix_file(directory, 300 if case == "lanczos" else 1000)
            start = _Start()
            kwargs = dict(k=10, which="LA", tol=1e-6) if case == "lanczos" else dict(k=4, which="LA", tol=1e-6,
                                                                                       max_iter=10)
            if distributed:
                outcome = solve_distributed(str(path), "lanczos", context=context, tracker=start, vectors="replicated",
                                            **kwargs)  # (the sharded runs: scripts/distributed_memory.py)
                result, stats = outcome.result, outcome.stats
            else:
                from explorer.problems.files import load_operator
                from explorer.solvers import solve

                t0 = time.perf_counter()
                op = load_operator(str(path))
                load_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                k = kwargs.pop("k")
                rss_before = memory_now()["rss_bytes"]
                result = solve("lanczos", op, k, seed=0, tracker=start, **kwargs)
                stats = {"load_s": load_s, "solve_s": time.perf_counter() - t0,
                         "local": {"block_bytes": int(op.to_scipy().data.nbytes + op.to_scipy().indices.nbytes
                                                      + op.to_scipy().indptr.nbytes)},
                         "memory": {"peak_rss": memory_now()["peak_rss_bytes"],
                                    "rss_before_solve": rss_before}, "collectives": {"calls": 0,
                                                                                                 "bytes": 0,
                                                                                                 "seconds": 0.0}}
            n = result.eigenvectors.shape[0]
            out.update(n=n, n_matvec=result.n_matvec, n_iter=result.n_iter, status=result.status.value,
                       eigenvalues=result.eigenvalues.tolist(), load_s=stats["load_s"], solve_s=stats["solve_s"],
                       block_bytes=stats["local"]["block_bytes"], basis_bytes=_basis_bytes(start.extras, n, 8),
                       extras=start.extras, peak_rss=stats["memory"]["peak_rss"],
                       rss_before_solve=stats["memory"]["rss_before_solve"], collectives=stats["collectives"])
        elif case == "exchange":
            from explorer.distributed import RowShardedOperator, read_row_block, row_ranges

            path = _matrix_file(directory, 1000)
            n = 1000 * 1000
            start, stop = row_ranges(n, context.world_size)[context.rank]
            block = read_row_block(path, start, stop)
            op = RowShardedOperator(block.matrix, row_ranges(n, context.world_size), context)
            x = torch.ones(n, dtype=torch.float64)
            op.matvec(x)
            reps = 40
            t0 = time.perf_counter()
            for _ in range(reps):
                op._local(x.unsqueeze(1))
            local_s = (time.perf_counter() - t0) / reps
            comm0 = context.comm.as_dict()
            t0 = time.perf_counter()
            for _ in range(reps):
                op.matvec(x)
            total_s = (time.perf_counter() - t0) / reps
            comm = context.comm.as_dict()
            out.update(n=n, local_spmv_s=local_s, product_s=total_s,
                       gather_s=(comm["seconds"] - comm0["seconds"]) / reps,
                       gather_bytes=(comm["bytes"] - comm0["bytes"]) // reps if distributed else 0,
                       block_bytes=op.block_bytes, peak_rss=memory_now()["peak_rss_bytes"])
        elif case == "hessian":
            models = ROOT / "sample_data" / "models"
            if distributed:
                outcome = hessian_distributed(models / "mlp.pt2", models / "mlp_data.safetensors", "lanczos", 5,
                                              which="LA", tol=1e-4, context=context)
                result, stats = outcome.result, outcome.stats
            else:
                from explorer.models import HessianOperator, load_dataset, load_exported_model
                from explorer.solvers import solve

                t0 = time.perf_counter()
                H = HessianOperator(load_exported_model(models / "mlp.pt2"),
                                    load_dataset(models / "mlp_data.safetensors"), "cross_entropy")
                load_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                result = solve("lanczos", H, 5, which="LA", tol=1e-4, seed=0)
                stats = {"load_s": load_s, "solve_s": time.perf_counter() - t0,
                         "memory": {"peak_rss": memory_now()["peak_rss_bytes"]},
                         "collectives": {"calls": 0, "bytes": 0, "seconds": 0.0}, "local": {"samples": 256}}
            out.update(n=result.eigenvectors.shape[0], n_matvec=result.n_matvec, status=result.status.value,
                       eigenvalues=result.eigenvalues.tolist(), load_s=stats["load_s"], solve_s=stats["solve_s"],
                       samples=stats["local"]["samples"], peak_rss=stats["memory"]["peak_rss"],
                       collectives=stats["collectives"])
    return out


def _mb(x: float) -> str:
    return f"{x / 2**20:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--ranks", nargs="+", type=int, default=[0, 1, 2, 4])
    parser.add_argument("--json", type=Path, default=None, help="write every rank's figures here")
    parser.add_argument("--rank-case", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "explorer_distributed_bench")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.rank_case:  # one rank
        print("RESULT " + json.dumps(rank_main(args.rank_case, args.dir)), flush=True)
        return 0
    from explorer.distributed.launch import launch_local

    rows, everything = [], {}
    for case in args.cases:
        for world in args.ranks:
            argv = [str(Path(__file__).resolve()), "--rank-case", case, "--dir", str(args.dir)]
            t0 = time.perf_counter()
            if world == 0:
                import subprocess

                done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=1800,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
                outs = [done.stdout]
                failed = done.returncode != 0 and done.stderr[-2000:]
            else:
                runs = launch_local(argv, world, timeout=1800, env={"PYTHONPATH": str(ROOT)})
                outs = [r.stdout for r in runs]
                failed = next((f"rank {r.rank}: {r.stderr[-2000:]}" for r in runs if r.returncode != 0), None)
            wall = time.perf_counter() - t0
            if failed:
                print(f"{case} at {world} ranks failed: {failed}", file=sys.stderr)
                continue
            reports = [json.loads(line[7:]) for text in outs for line in text.splitlines()
                       if line.startswith("RESULT ")]
            everything[f"{case}/{world}"] = {"wall_s": wall, "ranks": reports}
            load1 = os.getloadavg()[0]
            rows.append((case, world, reports, wall, load1))
            print(f"{case} ranks={world} wall={wall:.1f}s load={load1:.1f}", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    for case in args.cases:
        mine = [r for r in rows if r[0] == case]
        if not mine:
            continue
        print(f"\n### {case}\n")
        if case == "exchange":
            print("| ranks | block MB / rank | local SpMV ms | product ms | all-gather ms | bytes in / product "
                  "| peak RSS MB / rank |")
            print("|---|---|---|---|---|---|---|")
            for _, world, reports, _, _ in mine:
                r = max(reports, key=lambda x: x["product_s"])
                print(f"| {world or '1 (no group)'} | {_mb(max(x['block_bytes'] for x in reports))} | "
                      f"{1e3 * r['local_spmv_s']:.2f} | {1e3 * r['product_s']:.2f} | {1e3 * r['gather_s']:.2f} | "
                      f"{_mb(r['gather_bytes'])} MB | {_mb(max(x['peak_rss'] for x in reports))} |")
            continue
        head = "| ranks | products | load s | solve s (slowest rank) | collectives | in collectives s |"
        head += (" block MB / rank | basis MB / rank | RSS before solve MB / rank | peak RSS MB / rank |"
                 " wall s (with start-up) | load avg |")
        if case == "hessian":
            head = head.replace("block MB / rank | basis MB / rank | RSS before solve MB / rank", "samples / rank")
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for _, world, reports, wall, load1 in mine:
            slow = max(reports, key=lambda x: x["solve_s"])
            cols = [str(world or "1 (no group)"), str(slow["n_matvec"]), f"{max(x['load_s'] for x in reports):.2f}",
                    f"{slow['solve_s']:.2f}", str(slow["collectives"]["calls"]),
                    f"{slow['collectives']['seconds']:.2f}"]
            if case == "hessian":
                cols.append(str(max(x["samples"] for x in reports)))
            else:
                cols += [_mb(max(x["block_bytes"] for x in reports)), _mb(max(x["basis_bytes"] for x in reports)),
                         _mb(max(x["rss_before_solve"] for x in reports))]
            cols += [_mb(max(x["peak_rss"] for x in reports)), f"{wall:.1f}", f"{load1:.1f}"]
            print("| " + " | ".join(cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
