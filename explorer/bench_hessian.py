"""``python -m explorer.bench_hessian``: the name the performance issue (GPU path) gives the
Hessian bench; it runs :mod:`explorer.bench.hessian`, where the bench lives since the layout
change (same arguments, same output)."""

from __future__ import annotations

import sys

from explorer.bench.hessian import main

if __name__ == "__main__":
    sys.exit(main())
