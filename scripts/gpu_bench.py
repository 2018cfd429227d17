"""The prepared device check (run by scripts/gpu_bench.sh): the matrix and Hessian benches on one GPU.

Steps, each printing its figures as it goes and writing CSV / JSON under ``--out``, in the order
n = 10^6 (both dtypes), the Hessian in float32, n = 10^7 (both dtypes), the Hessian in float64:

1. 2-D Laplacian n = 10^6 and 10^7 (``laplace2d_N1000``, ``laplace2d_N3163``), k = 10 LA, on
   the GPU in float32 (tol 1e-5) and float64 (tol 1e-6): ``lanczos`` (cap ``--cap-lanczos``
   wall seconds), then ``lobpcg`` and ``torch_lobpcg`` (``--cap-peers``; a solver capped at
   n = 10^6 is skipped at 10^7, the bench's skip rule). Each problem is built once on the CPU
   and moved to the device per dtype.
2. The Hessian of a generated GPT-like decoder (``--model``, ~100M parameters) top-10 in
   float32: ``lanczos`` and ``torch.lobpcg`` (``--cap-hessian``); then in float64 if time is left.

``--budget`` seconds (default 420) bounds the whole script: a step that would start with less
than its cap left is skipped and says so. ``--tiny`` runs the same steps on tiny sizes (n = 900
and 1600, a 20k-parameter transformer) in a few minutes on a busy 2-core host, on the CPU when
there is no GPU: the check that the script runs end to end before it spends device time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.bench import hessian as hbench  # noqa: E402
from explorer.bench import matrix as mbench  # noqa: E402
from explorer.operators.devices import device_label  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the end-to-end check before a GPU run")
    parser.add_argument("--device", default=None, help="default: cuda when there is one, else cpu (--tiny only)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_bench_out")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole script")
    parser.add_argument("--cap-lanczos", type=float, default=None)
    parser.add_argument("--cap-peers", type=float, default=None)
    parser.add_argument("--cap-hessian", type=float, default=None)
    parser.add_argument("--model", default=None, help="default transformer:100M (tiny: transformer:20k)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.tiny:
        print("no CUDA device here: run with --tiny for the CPU check, or on a GPU machine", flush=True)
        return 2
    tiny = args.tiny
    keys = ("laplace2d_N30", "laplace2d_N40") if tiny else ("laplace2d_N1000", "laplace2d_N3163")
    cap_lanczos = args.cap_lanczos or (10.0 if tiny else 90.0)
    cap_peers = args.cap_peers or (5.0 if tiny else 40.0)
    cap_hessian = args.cap_hessian or (30.0 if tiny else 90.0)
    model = args.model or ("transformer:20k" if tiny else "transformer:100M")
    torch.set_num_threads(1 if device.type == "cpu" else min(8, os.cpu_count() or 1))
    env = {"torch": torch.__version__, "device": device_label(str(device)), "tiny": tiny,
           "cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        env.update(free_gb=free / 2**30, total_gb=total / 2**30)
    print(f"# gpu_bench: {json.dumps(env)}", flush=True)
    (out / "env.json").write_text(json.dumps(env, indent=1))

    def left() -> float:
        return args.budget - (time.perf_counter() - start)

    def log(line: str) -> None:
        print("  " + line, flush=True)

    import pandas as pd

    frames: list[Any] = []
    reports: dict[str, Any] = {}
    skips = {dtype: mbench._SkipBook() for dtype in (torch.float32, torch.float64)}

    def matrix_step(key: str) -> None:
        """Both dtypes on one problem: lanczos (its cap), then lobpcg and torch.lobpcg (theirs)."""
        t = time.perf_counter()
        problem = mbench.make_problems([key], cases=[(10, "LA")])[0]
        print(f"# built {key} (n = {problem.n:,}) in {time.perf_counter() - t:.1f} s; {left():.0f} s left", flush=True)
        for dtype in (torch.float32, torch.float64):
            for solvers, cap in ((("lanczos",), cap_lanczos), (("lobpcg", "torch_lobpcg"), cap_peers)):
                need = cap * len(solvers) * (0.5 if key == keys[0] else 1.0)
                if left() < need:
                    print(f"# skipped {key} {dtype} {solvers}: {left():.0f} s left, the caps need ~{need:.0f}",
                          flush=True)
                    continue
                try:
                    frame = mbench.run_benchmark([problem], solvers, cap_s=cap, overhead_max_s=0.0,
                                                 repeat_below_s=1.0, log=log, isolate=False, skips=skips[dtype],
                                                 device=device, dtype=dtype)
                except Exception:  # noqa: BLE001 - a failing step must not lose the others
                    traceback.print_exc()
                    continue
                frame.insert(0, "dtype", str(dtype).replace("torch.", ""))
                frames.append(frame)
                pd.concat(frames, ignore_index=True).to_csv(out / "matrix.csv", index=False)
        del problem
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def hessian_step(dtype: torch.dtype, tol: float) -> None:
        """The generated transformer's top-10 Hessian eigenvalues: lanczos, then torch.lobpcg."""
        name = str(dtype).replace("torch.", "")
        if left() < 2 * cap_hessian + 30:
            print(f"# skipped the Hessian in {name}: {left():.0f} s left", flush=True)
            return
        max_basis = None
        if device.type == "cuda":  # the basis (max_basis vectors of n) within 40 % of the free memory
            from explorer.bench.models import parse_model_spec, transformer_config

            n = transformer_config(parse_model_spec(model)[1]).parameters
            free, _total = torch.cuda.mem_get_info(device)
            max_basis = int(min(80, max(30, 0.4 * free / (n * dtype.itemsize))))
        print(f"# Hessian of {model} in {name}, tol {tol:g}, max_basis {max_basis or 'default'}; "
              f"{left():.0f} s left", flush=True)
        try:
            report = hbench.run_benchmark(k=10, tol=tol, seeds=(0,), model=model, device=device, dtype=dtype,
                                          peers=("lanczos", "torch_lobpcg"), cap_s=cap_hessian, max_basis=max_basis)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return
        reports[name] = report
        print(hbench.format_table(report), flush=True)
        (out / "hessian.json").write_text(json.dumps(reports, indent=1, default=str))
        if device.type == "cuda":
            print(f"# peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GB", flush=True)
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.empty_cache()

    # the order puts each goal's first figure early: n = 10^6, the float32 Hessian, n = 10^7, float64
    matrix_step(keys[0])
    hessian_step(torch.float32, 1e-5)
    matrix_step(keys[1])
    hessian_step(torch.float64, 1e-6)
    if frames:
        print()
        print(mbench.format_table(pd.concat(frames, ignore_index=True)), flush=True)
    print(f"# gpu_bench done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0 if frames or reports else 1


if __name__ == "__main__":
    raise SystemExit(main())
