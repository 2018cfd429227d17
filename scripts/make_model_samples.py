"""Write the sample models into sample_data/models/ (.pt2, .safetensors, data files, manifest.json).

Deterministic: local generators with fixed seeds and single-threaded training, so the
weights come out the same on every run with the same torch build. The manifest records
reference numbers from the dense float64 Hessian (torch.func.hessian). Usage::

    .venv/bin/python scripts/make_model_samples.py [--out DIR] [--no-reference]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from explorer.models.samples import MODEL_SAMPLE_DIR, write_model_samples  # noqa: E402

#: The model samples ship with the repository; keep them small.
SIZE_BUDGET_BYTES = 400_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODEL_SAMPLE_DIR, help=f"output directory ({MODEL_SAMPLE_DIR})")
    parser.add_argument("--no-reference", action="store_true", help="skip the dense Hessian numbers (faster)")
    args = parser.parse_args(argv)
    entries = write_model_samples(args.out, with_reference=not args.no_reference)
    total = 0
    for entry in entries:
        for key in ("model_file", "state_dict_file", "data_file"):
            size = (args.out / entry[key]).stat().st_size
            total += size
            print(f"{entry[key]:24s} {size / 1e3:7.1f} kB")
        line = f"  {entry['name']}: {entry['n_parameters']} parameters, train accuracy {entry['train_accuracy']:.3f}"
        if "hessian_top5" in entry:
            line += f", Hessian top eigenvalue {entry['hessian_top5'][0]:.6g}"
        print(line)
    print(f"{'total':24s} {total / 1e3:7.1f} kB -> {args.out}")
    if total > SIZE_BUDGET_BYTES:
        print(f"error: the model samples take {total / 1e3:.0f} kB, above the {SIZE_BUDGET_BYTES / 1e3:.0f} kB budget",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
