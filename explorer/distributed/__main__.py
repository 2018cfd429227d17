"""Command line: ``python -m explorer.distributed solve|hessian ...``, under torchrun for several ranks.

    torchrun --nproc-per-node 2 -m explorer.distributed solve laplacian_2d:300 --solver lanczos -k 10 \\
        --which LA --distributed --json
    python -m explorer.distributed solve laplacian_2d:300 --solver lanczos -k 10 --which LA --json   # one process
    torchrun --nproc-per-node 4 -m explorer.distributed hessian sample_data/models/mlp.pt2 \\
        --data sample_data/models/mlp_data.safetensors -k 5 --distributed --json

Only rank 0 prints the result. Exit codes: 0 done (whatever the solver's status), 1 bad
input, 2 bad usage, 3 the distributed run failed (a rank died or hung, the ranks disagreed
or diverged, the backend could not start).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any, Sequence

__all__ = ["main", "build_parser"]

_DTYPES = ("float64", "float32")


def _common(parser: argparse.ArgumentParser, *, tol: float, dtype: str) -> None:
    parser.add_argument("--solver", default="lanczos", help="a registry solver (lanczos, lobpcg, power, ...)")
    parser.add_argument("-k", type=int, default=4, help="how many eigenpairs (default 4)")
    parser.add_argument("--which", default="LA", help="LA, SA, LM or BE (default LA)")
    parser.add_argument("--tol", type=float, default=tol, help=f"relative residual tolerance (default {tol:g})")
    parser.add_argument("--max-iter", type=int, default=None, help="iteration limit (default: the solver's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random start (default 0)")
    parser.add_argument("--dtype", choices=_DTYPES, default=dtype, help=f"default {dtype}")
    parser.add_argument("--distributed", action="store_true",
                        help="split the work across the ranks torchrun started (without it: one process)")
    parser.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                        help="gloo (CPUs), nccl (GPUs, one per rank), auto: nccl when every rank has a GPU")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds a rank waits for the others in one exchange before it gives up (default 120)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a solver option, e.g. --set block_size=2 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m explorer.distributed",
                                     description="Eigensolver Explorer solves across processes (torch.distributed).")
    commands = parser.add_subparsers(dest="command", required=True)
    solve = commands.add_parser("solve", help="eigenvalues of a matrix split by rows across the ranks")
    solve.add_argument("source", help="a generator (laplacian_2d:300, laplacian_3d:nx=40), a .mtx / .npz file, "
                                      "or sample:NAME")
    _common(solve, tol=1e-6, dtype="float64")
    hessian = commands.add_parser("hessian", help="eigenvalues of a model's loss Hessian, data split across ranks")
    hessian.add_argument("model", help="an exported model (.pt2, torch.export.save)")
    hessian.add_argument("--data", required=True, help="inputs and targets (.pt, .safetensors, .npz)")
    hessian.add_argument("--curvature", choices=("hessian", "ggn"), default="hessian",
                         help="the Hessian or the Gauss-Newton matrix (default hessian)")
    hessian.add_argument("--loss", default=None, help="cross_entropy or mse (default: the sample's, else "
                                                      "cross_entropy)")
    hessian.add_argument("--params", default=None, help="parameter filter: a glob such as 'layers.0.*'")
    hessian.add_argument("--batch-size", type=int, default=None, help="samples per chunk (memory)")
    hessian.add_argument("--minibatch", type=int, default=None, help="a random subset of this many samples")
    _common(hessian, tol=1e-4, dtype="float32")
    return parser


def _extras(items: Sequence[str]) -> dict[str, Any]:
    from explorer.distributed.solve import _value

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set takes NAME=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = _value(raw)
    return out


def _single_process(args: argparse.Namespace, dtype: Any, extras: dict[str, Any]) -> dict[str, Any]:
    """The same command in one process, through the plain operators (the reference)."""
    from explorer.solvers import solve

    if args.command == "solve":
        from explorer.distributed.solve import _generated_problem, _reference, parse_source

        spec = parse_source(args.source)
        problem = None
        if spec.kind == "file":
            from explorer.problems.files import load_operator

            operator = load_operator(spec.name, dtype=dtype)
        elif spec.kind == "sample":
            from explorer.problems.samples import load_sample

            problem = load_sample(spec.name, dtype=dtype)
            operator = problem.operator
        else:
            problem = _generated_problem(spec, dtype)
            operator = problem.operator
        result = solve(args.solver, operator, args.k, which=args.which, tol=args.tol, max_iter=args.max_iter,
                       seed=args.seed, **extras)
        label, reference = spec.label, _reference(problem, result)
    else:
        from explorer.distributed.solve import _sample_loss
        from explorer.models import GGNOperator, HessianOperator, load_dataset, load_exported_model

        model, data = load_exported_model(args.model), load_dataset(args.data)
        cls = HessianOperator if args.curvature == "hessian" else GGNOperator
        operator = cls(model, data, args.loss or _sample_loss(args.model) or "cross_entropy", args.params,
                       batch_size=args.batch_size, minibatch=args.minibatch, seed=args.seed, dtype=dtype)
        result = solve(args.solver, operator, args.k, which=args.which, tol=args.tol, max_iter=args.max_iter,
                       seed=args.seed, **extras)
        label, reference = f"{args.curvature} of {model.name} over {data.name}", None
    from explorer.distributed.solve import DistributedOutcome

    return DistributedOutcome(result, 0, 1, "none", label, reference).summary()


def _distributed(args: argparse.Namespace, dtype: Any, extras: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    from explorer.distributed import hessian_distributed, init_from_env, solve_distributed

    context = init_from_env(args.backend, timeout=args.timeout)
    with context:
        common = dict(which=args.which, tol=args.tol, max_iter=args.max_iter, seed=args.seed, dtype=dtype,
                      context=context, **extras)
        if args.command == "solve":
            outcome = solve_distributed(args.source, args.solver, args.k, **common)
        else:
            outcome = hessian_distributed(args.model, args.data, args.solver, args.k, curvature=args.curvature,
                                          loss=args.loss, params=args.params, batch_size=args.batch_size,
                                          minibatch=args.minibatch, **common)
        return context.is_root, outcome.summary()


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    extra = summary.get("distributed", {})
    print(f"{summary['problem']}: {summary['solver']} k={summary['k']} {summary['which']}: {summary['status']} "
          f"after {summary['n_iter']} iterations, {summary['n_matvec']} products, {summary['elapsed_s']:.3g} s"
          + (f" on {extra['world_size']} ranks ({extra['backend']})" if extra.get("world_size", 1) > 1 else ""))
    reference = summary.get("reference")
    for i, value in enumerate(summary["eigenvalues"]):
        line = f"  {i + 1:3d}  {value: .15g}  residual {summary['residual_norms'][i]:.2e}"
        if reference and i < len(reference):
            line += f"  exact {reference[i]: .15g}"
        print(line)
    if summary["message"]:
        print(summary["message"])


def _on_sigterm(signum: int, frame: Any) -> None:
    from explorer.distributed import RankFailureError

    raise RankFailureError(f"rank {os.environ.get('RANK', '?')} was stopped by SIGTERM: torchrun stops every rank "
                           "when one of them fails; the first failure in its log is the cause")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from explorer.distributed import DistributedError, launched_by_torchrun

    rank = os.environ.get("RANK", "0")
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    prefix = f"rank {rank}: " if world > 1 else ""
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
        dtype = torch.float64 if args.dtype == "float64" else torch.float32
        extras = _extras(args.set)
        if args.distributed:
            if not launched_by_torchrun():
                from explorer.distributed import DistributedSetupError

                raise DistributedSetupError("--distributed needs the ranks torchrun starts: run `torchrun "
                                            "--nproc-per-node N -m explorer.distributed ...`, or drop --distributed "
                                            "for one process")
            signal.signal(signal.SIGTERM, _on_sigterm)
            is_root, summary = _distributed(args, dtype, extras)
        else:
            if world > 1:
                raise ValueError(f"started as one of {world} ranks without --distributed: every rank would solve "
                                 "the whole problem on its own. Add --distributed to split it")
            is_root, summary = True, _single_process(args, dtype, extras)
    except DistributedError as error:
        print(f"{prefix}error: {error}", file=sys.stderr, flush=True)
        return 3
    except (ValueError, TypeError, KeyError, OSError) as error:
        text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"{prefix}error: {text}", file=sys.stderr, flush=True)
        return 1
    if is_root:
        _print(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
