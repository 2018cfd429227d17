"""What StoreTracker costs a solve: wall time with no tracker, a HistoryTracker, and a StoreTracker (every record
written to an SQLite run store), runs interleaved so that a shared machine's noise hits every mode alike.

    python scripts/bench_store_tracker.py              # 7 rounds of each case
    python scripts/bench_store_tracker.py --rounds 11 --store /tmp/bench.sqlite

Cases: Lanczos on the 2-D Laplacian n = 10^4 (k = 10, LA, tol 1e-6); LOBPCG on a dense
n = 400 geometric spectrum (k = 10, LA, tol 1e-12), a short solve (0.1 s, where the fixed
costs of opening and closing a run weigh most); power iteration on the 1-D Laplacian
n = 1000 for 5000 iterations of ~0.4 ms (the worst case per record). Each round's order of modes rotates. Prints one
markdown row per case: per mode the median wall time and the median CPU time of the whole
process (``time.process_time``: the solver thread and the store's flusher thread
together, and much less disturbed than wall time by other processes on a shared
machine), and the StoreTracker's overhead against no tracker as the median over rounds of
the per-round ratio, for CPU and for wall time. Then the cost per record measured
directly: records handed to a StoreTracker without a solver, CPU time until all are
committed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _cases():
    from explorer import problems

    lap = problems.laplacian_2d(100)
    dense = problems.prescribed_spectrum(400, "geometric", decay=0.97, seed=0)
    line = problems.laplacian_1d(1000)
    return [
        ("Lanczos, 2-D Laplacian n=10^4, k=10 LA, tol 1e-6", "lanczos", lap.operator,
         dict(k=10, which="LA", tol=1e-6, seed=0)),
        ("LOBPCG, dense geometric n=400, k=10 LA, tol 1e-12 (short)", "lobpcg", dense.operator,
         dict(k=10, which="LA", tol=1e-12, seed=0)),
        ("power iteration, 1-D Laplacian n=1000, k=4, 5000 cheap iterations", "power_iteration", line.operator,
         dict(k=4, which="LM", tol=1e-12, seed=0, max_iter=5000)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--store", default=None, help="store file (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from explorer import solve
    from explorer.store import RunStore, StoreTracker
    from explorer.tracking import HistoryTracker

    folder = tempfile.mkdtemp()
    store = RunStore(args.store or Path(folder) / "bench.sqlite")
    modes = ["none", "history", "store"]
    print("| case | records/solve | none: wall / CPU s | HistoryTracker | StoreTracker | StoreTracker vs none: "
          "CPU (wall) |")
    print("|---|---|---|---|---|---|")
    for label, name, operator, kwargs in _cases():
        solve(name, operator, **kwargs)  # warm-up (first-call costs)
        wall: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        ratios_cpu: list[float] = []
        ratios_wall: list[float] = []
        records = 0
        for round_ in range(args.rounds):
            order = modes[round_ % 3:] + modes[:round_ % 3]
            this_wall: dict[str, float] = {}
            this_cpu: dict[str, float] = {}
            for mode in order:
                tracker = None if mode == "none" else HistoryTracker() if mode == "history" else StoreTracker(store)
                c0, t0 = time.process_time(), time.perf_counter()
                result = solve(name, operator, tracker=tracker, **kwargs)
                this_wall[mode], this_cpu[mode] = time.perf_counter() - t0, time.process_time() - c0
                if mode == "store":
                    info = store.run(tracker.run_id)
                    assert info.n_records == len(result.history), "not every record was written"
                    records = info.n_records
            for mode in modes:
                wall[mode].append(this_wall[mode])
                cpu[mode].append(this_cpu[mode])
            ratios_cpu.append(this_cpu["store"] / this_cpu["none"] - 1.0)
            ratios_wall.append(this_wall["store"] / this_wall["none"] - 1.0)

        def cell(mode: str) -> str:
            return f"{statistics.median(wall[mode]):.3f} / {statistics.median(cpu[mode]):.3f}"

        print(f"| {label} | {records} | {cell('none')} | {cell('history')} | {cell('store')} | "
              f"{100 * statistics.median(ratios_cpu):+.1f} % ({100 * statistics.median(ratios_wall):+.1f} %); "
              f"CPU per round: {', '.join(f'{100 * r:+.1f}' for r in ratios_cpu)} |")
    _per_record(store)


def _per_record(store) -> None:
    """CPU microseconds per record through a StoreTracker alone (no solver), committed to the file."""
    from explorer.store import StoreTracker
    from explorer.tracking import IterationRecord, SolveStart

    count = 5000
    values = torch.linspace(1.0, 2.0, 10, dtype=torch.float64)
    every = torch.linspace(0.0, 2.0, 40, dtype=torch.float64)
    made = [IterationRecord("lanczos", i, values, values * 1e-3, True, 1e-14, 3, 2 * i, 1e-3 * i,
                            all_ritz_values=every, ghost_mask=torch.zeros(10, dtype=torch.bool))
            for i in range(1, count + 1)]
    costs = []
    for _ in range(5):
        tracker = StoreTracker(store)
        tracker.on_start(SolveStart("lanczos", n=10_000, k=10, which="LA", tol=1e-6, max_iter=count,
                                    dtype="float64", device="cpu"))
        c0 = time.process_time()
        t0 = time.perf_counter()
        for record in made:
            tracker.on_iteration(record)
        handed = time.perf_counter() - t0
        tracker.flush()
        costs.append((time.process_time() - c0, handed))
        tracker.close()
    cpu = statistics.median(c for c, _ in costs)
    hand = statistics.median(h for _, h in costs)
    print(f"\nStoreTracker alone, {count} Lanczos-sized records (10 Ritz values and residuals, 40 staircase "
          f"values, 10 ghost flags): {1e6 * hand / count:.2f} us per record in the solver's thread (on_iteration), "
          f"{1e6 * cpu / count:.1f} us CPU per record in all (encoding and SQLite commits included; median of 5).")


if __name__ == "__main__":
    main()
