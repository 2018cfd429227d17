"""Widgets built from ``ParamSpec`` declarations (solver and generator forms).

``param_widget(spec, key)`` picks the widget from ``spec.kind``: int -> number_input
(step 1), float -> number_input (``"%.1e"`` for ``log_scale`` specs such as tol),
choice -> selectbox (showing ``spec.labels`` where given), bool -> checkbox; ``spec.help`` becomes the widget help, and the
declared minimum/maximum become the widget bounds. Values live in
``st.session_state[key]`` (set to the default the first time) and every key is a
session setting (``explorer.ui.state.keep``), so forms keep their values across
reruns and pages.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import streamlit as st

from explorer.solvers.registry import ParamSpec
from explorer.ui.state import keep

__all__ = ["param_widget", "param_form", "coerce", "pretty_name"]

_NAMES = {"k": "k (eigenpairs)", "which": "which end", "tol": "tolerance tol", "max_iter": "max iterations",
          "seed": "random seed"}


_AUTO = "auto (solver picks)"


def pretty_name(name: str) -> str:
    return _NAMES.get(name, name.replace("_", " "))


def coerce(spec: ParamSpec, value: Any) -> Any:
    """``value`` in the widget's type for ``spec`` (int, float, bool or one of the choices)."""
    if value is None:
        return None
    if spec.kind == "int":
        return int(value)
    if spec.kind == "float":
        return float(value)
    if spec.kind == "bool":
        return bool(value)
    return value


def _bounds(spec: ParamSpec) -> tuple[Any, Any]:
    lo = spec.minimum
    hi = spec.maximum
    if spec.kind == "int":
        return (None if lo is None else int(math.ceil(lo))), (None if hi is None else int(math.floor(hi)))
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))


def _clip(spec: ParamSpec, value: Any) -> Any:
    lo, hi = _bounds(spec)
    if value is None or spec.kind not in ("int", "float"):
        return value
    if lo is not None and value < lo:
        value = lo
    if hi is not None and value > hi:
        value = hi
    return value


def param_widget(spec: ParamSpec, key: str, *, label: str | None = None, default: Any = None,
                 container: Any = None, disabled: bool = False, choices: Iterable[Any] | None = None,
                 format_func: Callable[[Any], str] | None = None, help: str | None = None) -> Any:
    """One widget for ``spec`` under ``key``; returns its current value.

    ``default`` overrides ``spec.default`` for the first render; ``choices`` narrows a
    choice parameter's options (e.g. the ``which`` values a solver supports) and
    ``format_func`` labels them; ``help`` replaces ``spec.help``. An empty optional number
    shows ``spec.placeholder`` (what None means), by default "auto (solver picks)".
    """
    box = container if container is not None else st
    label = label or pretty_name(spec.name)
    options = list(choices) if choices is not None else list(spec.choices)
    initial = coerce(spec, spec.default if default is None else default)
    if spec.kind == "choice" and options and initial not in options:
        initial = options[0]
    keep(key)  # a session setting: the value survives visits to other pages
    if key not in st.session_state or st.session_state[key] is None:
        st.session_state[key] = _clip(spec, initial)
    # A value the widget would refuse (type or range changed, option gone): back to the default.
    current = st.session_state[key]
    if spec.kind == "choice" and current not in options:
        st.session_state[key] = initial if initial in options else options[0]
    elif spec.kind in ("int", "float"):
        try:
            fixed = _clip(spec, coerce(spec, current))
        except (TypeError, ValueError):
            fixed = _clip(spec, initial)
        if fixed != current or type(fixed) is not type(current):
            st.session_state[key] = fixed
    elif spec.kind == "bool" and not isinstance(current, bool):
        st.session_state[key] = bool(initial)
    help_text = spec.help if help is None else help
    empty = (spec.placeholder or _AUTO) if spec.optional else None
    # An optional number's default must be None: a cleared field deserializes to the widget's default
    # (number_input's own default is 0.0, so clearing sigma would have given sigma = 0).
    none_default = {"value": None} if spec.optional else {}
    if spec.kind == "int":
        lo, hi = _bounds(spec)
        return box.number_input(label, min_value=lo, max_value=hi, step=1, format="%d", key=key, help=help_text,
                                disabled=disabled, placeholder=empty, **none_default)
    if spec.kind == "float":
        lo, hi = _bounds(spec)
        if spec.log_scale:
            value = abs(float(st.session_state[key])) or 1e-6
            step = 10.0 ** math.floor(math.log10(value))
            return box.number_input(label, min_value=lo, max_value=hi, step=step, format="%.1e", key=key,
                                    help=help_text + " (type e.g. 1e-8)", disabled=disabled)
        span = (hi - lo) if lo is not None and hi is not None else None
        step = 0.1 if span is None or span >= 1 else 10.0 ** math.floor(math.log10(span / 10))
        return box.number_input(label, min_value=lo, max_value=hi, step=step, format="%g", key=key,
                                help=help_text, disabled=disabled, placeholder=empty, **none_default)
    if spec.kind == "choice":
        return box.selectbox(label, options, key=key, help=help_text, disabled=disabled,
                             format_func=format_func if format_func is not None else (spec.label if spec.labels else str))
    if spec.kind == "bool":
        return box.checkbox(label, key=key, help=help_text, disabled=disabled)
    raise ValueError(f"unknown parameter kind {spec.kind!r} for {spec.name}")


def param_form(specs: Iterable[ParamSpec], prefix: str, *, container: Any = None, columns: int = 1,
               disabled: bool = False) -> dict[str, Any]:
    """Widgets for several specs (keys ``f"{prefix}{spec.name}"``); returns {name: value}."""
    specs = list(specs)
    values: dict[str, Any] = {}
    box = container if container is not None else st
    cols = box.columns(columns) if columns > 1 else [box] * max(1, len(specs))
    for i, spec in enumerate(specs):
        values[spec.name] = param_widget(spec, f"{prefix}{spec.name}", container=cols[i % len(cols)],
                                         disabled=disabled)
    return values
