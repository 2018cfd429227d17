"""The commands: ``solve`` (load, configure, run with the store and the progress line, report) and ``runs``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from typing import Any

import torch

from explorer.cli.args import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_CONVERGED, EXIT_OK, EXIT_USAGE
from explorer.cli.output import ProgressLine, result_payload, result_text, runs_payload, runs_text, stored_run_id
from explorer.solvers import get_solver
from explorer.tracking import CompositeTracker, NullTracker, StopFlagTracker

__all__ = ["solve_command", "runs_command", "samples_command", "open_store", "error"]


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def open_store(path: str | None, *, quiet: bool = False, for_writing: bool = False) -> Any:
    """The RunStore at ``path`` (default: $EXPLORER_STORE / per-user), or None with a warning on stderr
    (also when ``for_writing`` and the store is read-only)."""
    from explorer.store import RunStore, StoreError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the notice is printed below, once
        try:
            store = RunStore(path)
        except (StoreError, OSError) as err:
            print(f"warning: {err}", file=sys.stderr)
            return None
    if store.notice and not quiet:
        print(f"warning: {store.notice}", file=sys.stderr)
    if for_writing and not store.writable:
        print(f"warning: {store.read_only_reason}", file=sys.stderr)
        return None
    return store


def _reference(problem: Any, config: Any) -> Any:
    """The exact values the solve should find, in its order (None when unknown): the k wanted ones, the k
    nearest sigma, or every eigenvalue of the interval."""
    spectral = config.spectral()
    if any(value is not None for value in spectral.values()):
        from explorer.solvers.shift_invert import spectral_reference

        values = spectral_reference(problem.spectrum, config.k, which=config.which, **spectral)
        return None if values is None else torch.as_tensor(values)
    try:
        reference = problem.reference(config.k, config.which)
    except (ValueError, TypeError):
        return None
    return reference


class _StartExtras(NullTracker):
    """Keeps what the solver said when it started (``SolveStart.extras``: an interval's inertia count)."""

    extras: dict[str, Any] = {}

    def on_start(self, start: Any) -> None:
        self.extras = dict(start.extras)


def solve_command(args: argparse.Namespace) -> int:
    from explorer.cli.solving import ctrl_c_stops, run_solve, solve_config
    from explorer.cli.sources import load_source
    from explorer.problems.files import LoadError
    from explorer.runs.config import check_solver_fits
    from explorer.runs.jobs import friendly_error
    from explorer.store import StoreTracker

    if getattr(args, "distributed", False):
        from explorer.cli.distributed import distributed_solve_command

        return distributed_solve_command(args)
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        error("started as one of several ranks (torchrun) without --distributed: every rank would solve the whole "
              "problem on its own. Add --distributed to split it")
        return EXIT_USAGE
    if args.threads is not None:
        if args.threads < 1:
            error(f"--threads must be at least 1, got {args.threads}")
            return EXIT_USAGE
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        config = solve_config(args)  # the arguments first: their messages come before any loading
        loaded = load_source(args.source, b=args.b, symmetrize=args.symmetrize)
        kind = getattr(loaded.problem, "kind", "eigen")
        if kind != "eigen":  # a rectangular matrix: the SVD solvers' defaults
            config = solve_config(args, kind)
        check_solver_fits(loaded.problem, config.solver)
    except (LoadError, ValueError, TypeError) as err:
        message = friendly_error(err)
        if "use an SVD solver" in message:
            message += " (--solver golub_kahan, or leave --solver out)"
        error(message)
        return EXIT_USAGE
    problem = loaded.problem
    reference = _reference(problem, config)
    store = None if args.no_store else open_store(args.store, for_writing=True)
    stop = StopFlagTracker()
    start = _StartExtras()
    store_tracker = None
    if store is not None:
        store_tracker = StoreTracker(store, args.name, problem=loaded.label, source="cli", reference=reference,
                                     params={"device": config.device, "dtype": config.dtype, "seed": config.seed})
    trackers = [t for t in (store_tracker, None if args.quiet else ProgressLine(sys.stderr), stop, start)
                if t is not None]
    try:
        with ctrl_c_stops(stop):
            result = run_solve(problem, config, CompositeTracker(*trackers))
    except (ValueError, TypeError, MemoryError) as err:  # the core's messages for bad settings
        message = friendly_error(err)
        return _failed(args, store_tracker, config, loaded, problem, message, EXIT_USAGE, started)
    except KeyboardInterrupt:
        return _failed(args, store_tracker, config, loaded, problem, "interrupted with Ctrl-C before a result",
                       EXIT_INTERRUPTED, started, status="stopped")
    except Exception as err:  # noqa: BLE001 - reported, stored as failed, never a traceback
        message = friendly_error(err)
        return _failed(args, store_tracker, config, loaded, problem, message, EXIT_FAILED, started)
    run_id = stored_run_id(store_tracker)
    status = result.status.value
    if args.json:
        payload = result_payload(run_id, status, result, elapsed=time.perf_counter() - started,
                                 svd=get_solver(config.solver).kind == "svd")
        spectral = config.spectral()
        if spectral["sigma"] is not None:
            payload["sigma"] = spectral["sigma"]
        if spectral["lower"] is not None:
            payload["interval"] = {"lower": spectral["lower"], "upper": spectral["upper"],
                                   "count": start.extras.get("inertia_count")}
        print(json.dumps(payload, allow_nan=False))
    else:
        ref = None if reference is None else torch.as_tensor(reference)
        print(result_text(loaded.label, run_id, result, ref, store.path if store is not None else None))
    if status == "converged":
        return EXIT_OK
    if status == "stopped":
        return EXIT_INTERRUPTED if stop.stop_requested else EXIT_NOT_CONVERGED
    return EXIT_NOT_CONVERGED


def _failed(args: argparse.Namespace, tracker: Any, config: Any, loaded: Any, problem: Any, message: str, code: int,
            started: float, *, status: str = "failed") -> int:
    error(message)
    run_id = None
    if tracker is not None:
        run_id = tracker.fail(message, status=status, solver=config.solver, n=problem.n, k=config.k,
                              which=config.which, tol=config.tol, max_iter=config.max_iter,
                              device=config.device, dtype=config.dtype,
                              params={**config.params()})
    if args.json:
        values = "singular_values" if get_solver(config.solver).kind == "svd" else "eigenvalues"
        print(json.dumps({"run_id": run_id, "status": status, values: [], "residual_norms": [],
                          "n_matvec": 0, "elapsed": time.perf_counter() - started}))
    return code


def runs_command(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    if store is None:
        return EXIT_FAILED
    frame = store.runs(status=args.status)
    if args.limit is not None:
        if args.limit < 1:
            error(f"--limit must be at least 1, got {args.limit}")
            return EXIT_USAGE
        frame = frame.tail(args.limit)
    print(runs_payload(frame) if args.json else runs_text(frame))
    if not args.json:
        print(f"({len(frame)} run{'' if len(frame) == 1 else 's'} in {store.path})", file=sys.stderr)
    return EXIT_OK


def samples_command(args: argparse.Namespace) -> int:
    from explorer.problems.samples import list_samples

    samples = list_samples()
    if args.json:
        print(json.dumps([{"name": s.name, "title": s.title, "n": s.n, "file": s.file} for s in samples], indent=1))
    else:
        width = max(len(s.name) for s in samples)
        for sample in samples:
            print(f"{sample.name:<{width}}  {sample.title}")
    return EXIT_OK
