"""Write the sample problems into sample_data/ (matrix files, manifest.json, README.md).

Deterministic (fixed seeds, no timestamps); rerun after changing ``explorer.problems.samples.SAMPLES``
and commit the result. Usage::

    .venv/bin/python scripts/make_samples.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from explorer.problems.samples import SAMPLE_DIR, write_samples  # noqa: E402

#: The samples ship with the repository; keep them small.
SIZE_BUDGET_BYTES = 2_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help=f"output directory (default {SAMPLE_DIR})")
    args = parser.parse_args(argv)
    entries = write_samples(args.out)
    total = 0
    for entry in entries:
        for name, details in ((entry["file"], f"n={entry['n']:<5d} nnz={entry['nnz']:<7d} {entry['format']}"),
                              (entry["b_file"], "(B of the pair above)")):
            if name:
                size = (args.out / name).stat().st_size
                total += size
                print(f"{name:28s} {size / 1e3:8.1f} kB  {details}")
    print(f"{'total':28s} {total / 1e3:8.1f} kB  -> {args.out}")
    if total > SIZE_BUDGET_BYTES:
        print(f"error: the samples take {total / 1e6:.2f} MB, above the {SIZE_BUDGET_BYTES / 1e6:.0f} MB budget; "
              "make them smaller", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
