"""Memory and time per rank of distributed Lanczos, sharded against replicated vectors (docs/benchmarks.md).

    python scripts/distributed_memory.py                       # both cases at 1, 2, 4 ranks; markdown tables
    python scripts/distributed_memory.py --cases memory --ranks 1 2 --json out.json

Cases (each run a fresh group of ranks started by ``explorer.distributed.launch.launch_local``,
the variables torchrun sets, gloo on localhost, one torch thread per rank):

* ``memory``: ``laplacian_2d:1000`` (n = 10^6, 5 M nonzeros, read per rank from an uncompressed
  .npz), Lanczos k = 10 LA, ``max_iter`` 60 (a fixed number of steps: memory, not convergence):
  this rank's CSR block, its basis (max_basis + block_size rows of its vector length), its peak
  resident memory (``getrusage`` ru_maxrss) and the solve's time.
* ``time``: ``laplacian_2d:300`` (n = 90 000), Lanczos k = 10 LA, tol 1e-6, to convergence.

Each case runs with ``vectors="replicated"`` (every rank holds the whole basis) and
``vectors="sharded"`` (each rank its rows of it; inner products all-reduced).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {"memory": dict(nx=1000, k=10, max_iter=60, tol=1e-6), "time": dict(nx=300, k=10, max_iter=None, tol=1e-6)}
VECTORS = ("replicated", "sharded")


def _matrix_file(directory: Path, nx: int) -> Path:
    import scipy.sparse as sp

    from explorer.problems import laplacian_2d

    path = directory / f"laplacian2d_{nx}.npz"
    if not path.exists():
        sp.save_npz(path, laplacian_2d(nx).operator.to_scipy(), compressed=False)
    return path


def rank_main(case: str, vectors: str, directory: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from explorer.distributed import init_from_env, solve_distributed

    spec = CASES[case]
    path = _matrix_file(directory, spec["nx"])
    with init_from_env("gloo", timeout=600) as context:
        outcome = solve_distributed(str(path), "lanczos", spec["k"], which="LA", tol=spec["tol"],
                                    max_iter=spec["max_iter"], seed=0, context=context, vectors=vectors)
        r, stats = outcome.result, outcome.stats
        return {"rank": context.rank, "world": context.world_size, "vectors": vectors, "status": r.status.value,
                "n_iter": r.n_iter, "n_matvec": r.n_matvec, "eigenvalues": r.eigenvalues.tolist(),
                "solve_s": stats["solve_s"], "load_s": stats["load_s"],
                "block_bytes": stats["local"]["block_bytes"], "basis_bytes": stats["local"]["basis_bytes"],
                "rss_before_solve": stats["memory"]["rss_before_solve"], "peak_rss": stats["memory"]["peak_rss"],
                "collectives": stats["collectives"], "reductions": stats.get("reductions")}


def _mb(x: float) -> str:
    return f"{x / 2**20:.1f}"


def _table(case: str, rows: list[dict]) -> str:
    lines = ["| vectors | ranks | steps | products | block MB / rank | basis MB / rank | RSS before solve MB | "
             "peak RSS MB / rank (max) | solve s (slowest) | collectives | reduced KB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        reports = row["reports"]
        r0 = reports[0]
        reduced = r0["reductions"]["reduced_bytes"] / 1024 if r0["reductions"] else 0.0
        lines.append(
            f"| {r0['vectors']} | {r0['world']} | {r0['n_iter']} | {r0['n_matvec']} | "
            f"{_mb(max(r['block_bytes'] for r in reports))} | {_mb(max(r['basis_bytes'] for r in reports))} | "
            f"{_mb(max(r['rss_before_solve'] for r in reports))} | {_mb(max(r['peak_rss'] for r in reports))} | "
            f"{max(r['solve_s'] for r in reports):.2f} | {r0['collectives']['calls']} | {reduced:.0f} |")
    return f"**{case}**\n\n" + "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["memory", "time"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--vectors", nargs="+", choices=VECTORS, default=list(VECTORS))
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "explorer_distributed_memory")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rank-case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rank-vectors", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_case:  # one rank of a run
        report = rank_main(args.rank_case, args.rank_vectors, args.dir)
        (args.out / f"rank{report['rank']}.json").write_text(json.dumps(report))
        return 0

    from explorer.distributed.launch import launch_local

    args.dir.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for case in args.cases:
        _matrix_file(args.dir, CASES[case]["nx"])
        rows = []
        for vectors in args.vectors:
            for world in args.ranks:
                with tempfile.TemporaryDirectory() as out:
                    argv = [str(Path(__file__).resolve()), "--rank-case", case, "--rank-vectors", vectors,
                            "--dir", str(args.dir), "--out", out]
                    start = time.perf_counter()
                    runs = launch_local(argv, world, timeout=1800, env={"PYTHONPATH": str(ROOT)})
                    failed = [r for r in runs if r.returncode != 0]
                    if failed:
                        print(failed[0].stderr[-3000:], file=sys.stderr)
                        return 1
                    reports = [json.loads((Path(out) / f"rank{r}.json").read_text()) for r in range(world)]
                rows.append({"reports": reports, "wall_s": time.perf_counter() - start})
                r0 = reports[0]
                peak, solve_s = max(r["peak_rss"] for r in reports), max(r["solve_s"] for r in reports)
                print(f"# {case} {vectors} {world} rank(s): {r0['n_iter']} steps, peak RSS {_mb(peak)} MB, "
                      f"solve {solve_s:.1f} s", file=sys.stderr, flush=True)
        results[case] = rows
        print(_table(case, rows) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
