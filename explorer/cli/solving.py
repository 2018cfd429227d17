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

from explorer.runs.config import SolveConfig, default_solver, make_target
from explorer.solvers import COMMON_PARAMS, SOLVERS, get_solver
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


_SPECTRAL_FLAGS = (("sigma", "--sigma"), ("lower", "--lower"), ("upper", "--upper"),
                   ("factorization", "--factorization"))


def solve_config(args: argparse.Namespace, kind: str = "eigen") -> SolveConfig:
    """A ``SolveConfig`` from ``solve``'s arguments; ValueError / TypeError name what is wrong.

    ``kind``: the problem's ("eigen", or "svd" for a rectangular matrix), which picks the default
    solver when ``--solver`` is not given. ``--sigma``, ``--lower`` / ``--upper`` and
    ``--factorization`` are the solver parameters of the same names (as ``--param sigma=...``);
    with sigma, ``which`` defaults to LM (the nearest), with an interval to SA (ascending) and k to
    the slicing's own cap (``explorer.solvers.slicing.MAX_COUNT``).
    """
    spec = get_solver(args.solver or default_solver(kind))
    common = {p.name: p for p in COMMON_PARAMS}
    known = [p.name for p in spec.params]
    extras: dict[str, Any] = {}
    for name, text in args.params:
        if name not in known:
            raise ValueError(f"{spec.name} has no parameter `{name}`; it has " + (", ".join(known) or "none"))
        extras[name] = _extra_value(spec, name, text)
    for name, flag in _SPECTRAL_FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in known:
            able = [s.name for s in SOLVERS.values() if any(p.name == name for p in s.params)]
            raise ValueError(f"{flag} applies to the solvers with shift-invert and spectrum slicing ({', '.join(able)}); "
                             f"{spec.name} has no `{name}`" + (" (it computes singular values)" if spec.kind == "svd"
                                                              else ""))
        if name in extras and extras[name] != value:
            raise ValueError(f"{flag} and --param {name}= say different things; give one of them")
        extras[name] = spec.param(name).validate(value)
    interval = extras.get("lower") is not None or extras.get("upper") is not None
    if interval and (extras.get("lower") is None or extras.get("upper") is None):
        raise ValueError("spectrum slicing needs both ends: give --lower and --upper")
    if interval and extras.get("sigma") is not None:
        raise ValueError("give either --sigma (the k eigenvalues nearest it) or --lower/--upper (every eigenvalue "
                         "in the interval), not both")
    if interval:
        from explorer.solvers.slicing import MAX_COUNT

        k = common["k"].validate(MAX_COUNT if args.k is None else args.k)
        which = args.which or "SA"
        if which not in ("SA", "LA"):
            raise ValueError(f"with --lower/--upper every eigenvalue of the interval comes back in ascending order; "
                             f"--which {which} has no meaning there: leave it out")
    elif extras.get("sigma") is not None:
        from explorer.solvers.shift_invert import SIGMA_WHICH

        k = common["k"].validate(4 if args.k is None else args.k)
        which = args.which or "LM"
        if which not in SIGMA_WHICH:
            raise ValueError(f"with --sigma, --which is LM (the k nearest sigma), LA (the k nearest above) or SA "
                             f"(the k nearest below), got {which!r}")
    else:
        k = common["k"].validate(4 if args.k is None else args.k)
        which = args.which or ("LA" if "LA" in spec.which else spec.which[0])
        if which not in spec.which:
            raise ValueError(f"{spec.name} does not compute which={which!r}; it supports {', '.join(spec.which)}")
    tol = common["tol"].validate(args.tol if args.tol is not None else spec.default_tol)
    max_iter = common["max_iter"].validate(args.max_iter if args.max_iter is not None else spec.default_max_iter)
    seed = common["seed"].validate(args.seed)
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
