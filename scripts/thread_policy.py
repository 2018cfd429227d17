"""Lanczos on the 2-D Laplacian under OpenMP thread counts and wait policies, each in a fresh process.

    .venv/bin/python scripts/thread_policy.py [--grid 100] [--repeat 3]

The wait policy is read when torch loads OpenMP, so every setting runs in its own interpreter.
Prints the best wall time of each setting and its ratio to 2 threads with PASSIVE (the policy
``import explorer`` sets). Run it while the host is busy and while it is quiet: the spinning
default costs most when another process holds a core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = """
import json, sys, time, torch
from explorer import solve
from explorer.problems import laplacian_2d
torch.set_num_threads(int(sys.argv[1]))
problem = laplacian_2d(int(sys.argv[2]))
best = float("inf")
for seed in range(int(sys.argv[3])):
    t = time.perf_counter()
    result = solve("lanczos", problem.operator, 10, which="LA", tol=1e-6, seed=seed)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"wall_s": best, "matvecs": result.n_matvec}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=100, help="grid side (n = grid^2)")
    parser.add_argument("--repeat", type=int, default=3, help="solves per setting (best is kept)")
    args = parser.parse_args()
    settings = [("1 thread", 1, "PASSIVE"), ("2 threads, ACTIVE (spin)", 2, "ACTIVE"),
                ("2 threads, PASSIVE (sleep)", 2, "PASSIVE")]
    rows = []
    for label, threads, policy in settings:
        env = dict(os.environ, OMP_WAIT_POLICY=policy)
        out = subprocess.run([sys.executable, "-c", _CHILD, str(threads), str(args.grid), str(args.repeat)],
                             env=env, capture_output=True, text=True, check=True)
        rows.append((label, json.loads(out.stdout.strip().splitlines()[-1])))
    reference = rows[-1][1]["wall_s"]
    print(f"load average {os.getloadavg()[0]:.1f}; lanczos k=10 LA on laplacian_2d({args.grid}), best of {args.repeat}")
    for label, row in rows:
        print(f"  {label:28s} {row['wall_s']:7.3f} s  {row['matvecs']:5d} matvecs  x{row['wall_s'] / reference:.2f}")


if __name__ == "__main__":
    main()
