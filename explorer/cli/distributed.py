"""``solve SOURCE --distributed`` and ``hessian MODEL.pt2 --data DATA``: the command line of ``explorer.distributed``.

Under ``torchrun --nproc-per-node N -m explorer ...`` every rank runs this; rank 0 alone
opens the run store, shows the progress line, takes Ctrl-C as Stop and prints the result,
so the app's History page follows the distributed run live like any other. The other ranks
ignore SIGINT (the Stop reaches them through rank 0's exchanges) and print only errors,
prefixed with their rank. ``hessian`` without ``--distributed`` runs the same code in one
process.

Exit codes as for ``solve`` (``explorer.cli.args``): 0 converged, 3 not converged, 2 bad input
(including ranks given different inputs), 1 the run failed (a rank died or hung, the ranks
diverged, the process group could not start), 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any, Callable

from explorer.cli.args import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_CONVERGED, EXIT_OK, EXIT_USAGE
from explorer.cli.output import ProgressLine, result_payload, result_text, stored_run_id
from explorer.tracking import CompositeTracker, StopFlagTracker

__all__ = ["distributed_solve_command", "hessian_command", "on_sigterm", "source_spec"]


def _error(message: str) -> None:
    rank, world = os.environ.get("RANK"), int(os.environ.get("WORLD_SIZE", "1") or 1)
    prefix = f"rank {rank}: " if rank is not None and world > 1 else ""
    print(f"{prefix}error: {message}", file=sys.stderr, flush=True)


def on_sigterm(signum: int, frame: Any) -> None:
    """torchrun stops the other workers with SIGTERM when one fails (or on Ctrl-C): end with a message."""
    from explorer.distributed import RankFailureError

    raise RankFailureError(f"rank {os.environ.get('RANK', '?')} was stopped by SIGTERM: torchrun stops every rank "
                           "when one of them fails (or on Ctrl-C); the first failure in its log is the cause")


def source_spec(text: str) -> Any:
    """SOURCE as ``explorer.distributed.SourceSpec``, read as ``solve`` reads it (``explorer.cli.sources``)."""
    from pathlib import Path

    from explorer.cli.sources import SourceError, _is_file_spec, parse_generator_spec, source_help
    from explorer.distributed import SourceSpec
    from explorer.problems import GENERATORS

    spec = text.strip()
    if not spec:
        raise SourceError(f"SOURCE is empty; give {source_help()}")
    if spec.partition(":")[0].strip() in GENERATORS and not Path(spec).exists():
        name, params = parse_generator_spec(spec)
        return SourceSpec("generate", name, tuple(params.items()))
    if _is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise SourceError(f"`{spec}` is not a file; SOURCE is {source_help()}")
        return SourceSpec("file", str(path))
    return SourceSpec("sample", spec)


@contextlib.contextmanager
def _signals(root: bool, stop: StopFlagTracker) -> Any:
    from explorer.cli.solving import ctrl_c_stops

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if root:
            with ctrl_c_stops(stop):
                yield
        else:
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 decides; its Stop reaches us
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, old)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, config: Any, label: str, runner: Callable[..., Any], *,
         distributed: bool) -> int:
    """Set up the group (or one process), rank 0's trackers, run ``runner(context, tracker, on_problem)``."""
    from explorer.cli.commands import open_store
    from explorer.distributed import DistContext, DistributedError, ProblemMismatchError, init_from_env
    from explorer.runs.jobs import friendly_error
    from explorer.store import StoreTracker

    started = time.perf_counter()
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    try:
        context = init_from_env(args.backend, timeout=args.timeout) if distributed else DistContext.local()
    except DistributedError as err:
        _error(str(err))
        return EXIT_FAILED
    root = context.is_root
    stop = StopFlagTracker()
    store_tracker = None
    if root and not args.no_store:
        store = open_store(args.store, for_writing=True)
        if store is not None:
            store_tracker = StoreTracker(store, args.name, problem=label, source="cli",
                                         params={"device": str(context.device), "dtype": config.dtype,
                                                 "seed": config.seed, "world_size": context.world_size,
                                                 "backend": context.backend})
    trackers = [t for t in (store_tracker, None if (args.quiet or not root) else ProgressLine(sys.stderr), stop)
                if t is not None]

    def on_problem(problem_label: str, values: Any) -> None:
        nonlocal label
        label = problem_label
        if store_tracker is not None:
            store_tracker.problem, store_tracker.reference = problem_label, values

    def failed(message: str, code: int, status: str = "failed") -> int:
        _error(message)
        run_id = None
        if store_tracker is not None:
            run_id = store_tracker.fail(message, status=status, solver=config.solver, k=config.k, which=config.which,
                                        tol=config.tol, max_iter=config.max_iter, dtype=config.dtype,
                                        params={**config.params()})
        if root and args.json:
            print(json.dumps({"run_id": run_id, "status": status, "eigenvalues": [], "residual_norms": [],
                              "n_matvec": 0, "elapsed": time.perf_counter() - started}))
        return code

    with context:
        try:
            with _signals(root, stop):
                outcome = runner(context, CompositeTracker(*trackers) if root else None, on_problem)
        except ProblemMismatchError as err:
            context.report_failure(err)
            return failed(str(err), EXIT_USAGE)
        except DistributedError as err:
            return failed(str(err), EXIT_FAILED)
        except (ValueError, TypeError, MemoryError) as err:  # the core's messages for bad settings or files
            context.report_failure(err)
            return failed(friendly_error(err), EXIT_USAGE)
        except KeyboardInterrupt:
            return failed("interrupted with Ctrl-C before a result", EXIT_INTERRUPTED, status="stopped")
    if not root:
        return _exit_code(outcome.result.status.value, stop)
    result = outcome.result
    run_id = stored_run_id(store_tracker)
    status = result.status.value
    if args.json:
        payload = result_payload(run_id, status, result, elapsed=time.perf_counter() - started)
        if distributed:
            payload["distributed"] = {"world_size": context.world_size, "backend": context.backend,
                                      **outcome.stats}
        print(json.dumps(payload, allow_nan=False))
    else:
        import torch

        reference = None if outcome.reference is None else torch.as_tensor(outcome.reference)
        print(result_text(label, run_id, result, reference,
                          store_tracker.store.path if store_tracker is not None and store_tracker.store else None))
        if distributed:
            stats = outcome.stats
            print(f"{context.world_size} ranks ({context.backend}): load {stats['load_s']:.2f} s, solve "
                  f"{stats['solve_s']:.2f} s, {stats['collectives']['calls']:,} exchanges "
                  f"({stats['collectives']['seconds']:.2f} s on rank 0), peak memory on rank 0 "
                  f"{stats['memory']['peak_rss'] / 2**20:.0f} MB")
    return _exit_code(status, stop)


def _exit_code(status: str, stop: StopFlagTracker) -> int:
    if status == "converged":
        return EXIT_OK
    if status == "stopped":
        return EXIT_INTERRUPTED if stop.stop_requested else EXIT_NOT_CONVERGED
    return EXIT_NOT_CONVERGED


def _dtype(config: Any) -> Any:
    from explorer.operators.devices import parse_dtype

    return parse_dtype(config.dtype)


def distributed_solve_command(args: argparse.Namespace) -> int:
    """``solve SOURCE --distributed``: the matrix split by rows across torchrun's ranks."""
    from explorer.cli.solving import solve_config
    from explorer.distributed import launched_by_torchrun, solve_distributed
    from explorer.problems.files import LoadError
    from explorer.runs.jobs import friendly_error

    if any(getattr(args, name, None) is not None for name in ("sigma", "lower", "upper")) or any(
            name in ("sigma", "lower", "upper") for name, _ in getattr(args, "params", [])):
        # shift-invert factors the assembled matrix on one process; the row shards have no such factorization
        _error("--sigma and --lower/--upper (shift-invert, spectrum slicing) run in one process only: drop "
               "--distributed")
        return EXIT_USAGE
    if not launched_by_torchrun():
        _error("--distributed needs the ranks torchrun starts: `torchrun --nproc-per-node N -m explorer solve "
               "SOURCE --distributed ...` (or drop --distributed for one process)")
        return EXIT_USAGE
    try:
        config = solve_config(args)
        if args.b is not None or args.symmetrize:
            raise ValueError("--B and --symmetrize are not supported with --distributed (standard symmetric "
                             "problems only)")
        if args.device != "cpu":
            raise ValueError("with --distributed each rank's device follows --backend (nccl: GPU LOCAL_RANK); "
                             "drop --device")
        spec = source_spec(args.source)
        dtype = _dtype(config)
        vectors = getattr(args, "vectors", "auto")
        if vectors == "sharded" and config.solver != "lanczos":
            raise ValueError(f"--vectors sharded runs Lanczos only ({config.solver} keeps whole vectors on every "
                             "rank): use `--vectors replicated`, or `--solver lanczos`")
    except (LoadError, ValueError, TypeError) as err:
        _error(friendly_error(err))
        return EXIT_USAGE

    def runner(context: Any, tracker: Any, on_problem: Callable[[str, Any], None]) -> Any:
        return solve_distributed(spec, config.solver, config.k, which=config.which, tol=config.tol,
                                 max_iter=config.max_iter, seed=config.seed, dtype=dtype, context=context,
                                 tracker=tracker, on_problem=on_problem, vectors=vectors, **config.extras)

    return _run(args, config, spec.label, runner, distributed=True)


def hessian_command(args: argparse.Namespace) -> int:
    """``hessian MODEL.pt2 --data DATA``: the loss Hessian's (or Gauss-Newton matrix's) eigenvalues;
    with ``--distributed`` the data split across torchrun's ranks."""
    from pathlib import Path

    from explorer.cli.solving import solve_config
    from explorer.distributed import hessian_distributed, launched_by_torchrun
    from explorer.runs.jobs import friendly_error

    if args.distributed and not launched_by_torchrun():
        _error("--distributed needs the ranks torchrun starts: `torchrun --nproc-per-node N -m explorer hessian "
               "MODEL.pt2 --data DATA --distributed ...` (or drop --distributed for one process)")
        return EXIT_USAGE
    if not args.distributed and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        _error("started as one of several ranks without --distributed: every rank would compute the whole "
               "Hessian on its own. Add --distributed to split the data")
        return EXIT_USAGE
    try:
        config = solve_config(args)
        dtype = _dtype(config)
        for path in (args.model, args.data):
            if not Path(path).is_file():
                raise ValueError(f"no file `{path}`; give an exported model (.pt2) and its data file")
    except (ValueError, TypeError) as err:
        _error(friendly_error(err))
        return EXIT_USAGE
    label = f"{args.curvature} of {Path(args.model).name} over {Path(args.data).name}"

    def runner(context: Any, tracker: Any, on_problem: Callable[[str, Any], None]) -> Any:
        return hessian_distributed(args.model, args.data, config.solver, config.k, which=config.which,
                                   tol=config.tol, max_iter=config.max_iter, seed=config.seed,
                                   curvature=args.curvature, loss=args.loss, params=args.parameters,
                                   batch_size=args.batch_size, minibatch=args.minibatch, dtype=dtype,
                                   context=context, tracker=tracker, **config.extras)

    return _run(args, config, label, runner, distributed=args.distributed)
