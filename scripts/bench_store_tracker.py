"""What StoreTracker costs a solve: wall time with no tracker, a HistoryTracker, and a StoreTracker (every record
written to an SQLite run store), runs interleaved so that a shared machine's noise hits every mode alike.

    python scripts/bench_store_tracker.py              # 7 rounds of each case
    python scripts/bench_store_tracker.py --rounds 11 --store /tmp/bench.sqlite

Cases: Lanczos on the 2-D Laplacian n = 10^4 (k = 10, LA, tol 1e-6) and LOBPCG on a dense
n = 400 geometric spectrum (k = 10, SA, tol 1e-12), a short solve with many cheap
iterations (the worst case per record). Prints one markdown row per case: the median and
the fastest time of each mode, and the StoreTracker's overhead against no tracker
(median over rounds of the per-round ratio). Each round's order of modes rotates.
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
    return [
        ("Lanczos, 2-D Laplacian n=10^4, k=10 LA, tol 1e-6", "lanczos", lap.operator,
         dict(k=10, which="LA", tol=1e-6, seed=0)),
        ("LOBPCG, dense geometric n=400, k=10 SA, tol 1e-12", "lobpcg", dense.operator,
         dict(k=10, which="SA", tol=1e-12, seed=0, max_iter=2000)),
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
    print("| case | records/solve | none: median (min) s | HistoryTracker | StoreTracker | StoreTracker vs none |")
    print("|---|---|---|---|---|---|")
    for label, name, operator, kwargs in _cases():
        solve(name, operator, **kwargs)  # warm-up (first-call costs)
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        ratios: list[float] = []
        records = 0
        for round_ in range(args.rounds):
            order = modes[round_ % 3:] + modes[:round_ % 3]
            this: dict[str, float] = {}
            for mode in order:
                tracker = None if mode == "none" else HistoryTracker() if mode == "history" else StoreTracker(store)
                t0 = time.perf_counter()
                result = solve(name, operator, tracker=tracker, **kwargs)
                this[mode] = time.perf_counter() - t0
                if mode == "store":
                    info = store.run(tracker.run_id)
                    assert info.n_records == len(result.history), "not every record was written"
                    records = info.n_records
            for mode in modes:
                times[mode].append(this[mode])
            ratios.append(this["store"] / this["none"] - 1.0)

        def cell(mode: str) -> str:
            return f"{statistics.median(times[mode]):.3f} ({min(times[mode]):.3f})"

        print(f"| {label} | {records} | {cell('none')} | {cell('history')} | {cell('store')} | "
              f"{100 * statistics.median(ratios):+.1f} % (rounds: {', '.join(f'{100 * r:+.0f}' for r in ratios)}) |")


if __name__ == "__main__":
    main()
