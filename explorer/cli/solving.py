"""Running one solve for the command line: its configuration, its trackers, Ctrl-C as Stop.

``solve_config(args)`` checks the parsed arguments against the solver registry (with the
core's own messages) and returns an ``explorer.runs.config.SolveConfig``, the object the app
builds from its forms; ``run_solve(problem, config, tracker)`` runs it through
``explorer.runs.config.make_target`` (device, dtype and B handled as in the app).
``ctrl_c_stops(flag)`` turns the first Ctrl-C into a Stop request (the solver ends after
its current iteration and keeps the partial result), the second into KeyboardInterrupt.
"""

from __future__ import annotations

import argparse
import signal
from contextlib import contextmanager
from typing import Any, Iterator

from explorer.runs.config import SolveConfig, make_target
from explorer.solvers import COMMON_PARAMS, get_solver
from explorer.tracking import StopFlagTracker, Tracker

__all__ = ["solve_config", "run_solve", "ctrl_c_stops"]


def _extra_value(spec: Any, name: str, text: str) -> Any:
    param = spec.param(name)
    if param.kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"`{name}` must be true or false, got {text!r}")
        return param.validate(lowered in ("true", "1", "yes"))
    if param.optional and text.lower() in ("none", ""):
        return param.validate(None)
    if param.kind == "int":
        try:
            value: Any = int(text)
        except ValueError:
            raise ValueError(f"`{name}` must be an integer, got {text!r}") from None
    elif param.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"`{name}` must be a number, got {text!r}") from None
    else:
        value = text
        if param.choices and text not in param.choices:
            for choice in param.choices:  # choices may be non-strings (ints, None)
                if str(choice) == text:
                    value = choice
    return param.validate(value)


def solve_config(args: argparse.Namespace) -> SolveConfig:
    """A ``SolveConfig`` from ``solve``'s arguments; ValueError / TypeError name what is wrong."""
    spec = get_solver(args.solver)
    common = {p.name: p for p in COMMON_PARAMS}
    k = common["k"].validate(args.k)
    which = args.which or ("LA" if "LA" in spec.which else spec.which[0])
    if which not in spec.which:
        raise ValueError(f"{spec.name} does not compute which={which!r}; it supports {', '.join(spec.which)}")
    tol = common["tol"].validate(args.tol if args.tol is not None else spec.default_tol)
    max_iter = common["max_iter"].validate(args.max_iter if args.max_iter is not None else spec.default_max_iter)
    seed = common["seed"].validate(args.seed)
    extras: dict[str, Any] = {}
    known = [p.name for p in spec.params]
    for name, text in args.params:
        if name not in known:
            raise ValueError(f"{spec.name} has no parameter `{name}`; it has " + (", ".join(known) or "none"))
        extras[name] = _extra_value(spec, name, text)
    from explorer.operators.devices import parse_device, parse_dtype

    parse_device(args.device)  # clear messages before any loading
    parse_dtype(args.dtype)
    return SolveConfig(solver=spec.name, k=k, which=which, tol=tol, max_iter=max_iter, seed=seed, device=args.device,
                       dtype=args.dtype, extras=extras)


def run_solve(problem: Any, config: SolveConfig, tracker: Tracker) -> Any:
    """Solve ``problem`` as ``config`` says, with ``tracker``; return the result."""
    return make_target(problem, config)(tracker)


@contextmanager
def ctrl_c_stops(flag: StopFlagTracker) -> Iterator[None]:
    """While inside: the first SIGINT asks ``flag`` to stop the solve; a second raises KeyboardInterrupt."""
    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.stop_requested:
            raise KeyboardInterrupt
        flag.request_stop("stopped with Ctrl-C")

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
