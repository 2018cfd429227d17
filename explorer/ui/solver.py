"""The solver section: solver menu, common parameters, device/dtype, the solver's own options.

``solver_sidebar(prefix="")`` draws the widgets (keys ``f"{prefix}solver"``,
``f"{prefix}k"``, ``which``, ``tol``, ``max_iter``, ``seed``, ``device``, ``dtype`` and
``f"{prefix}p_<solver>_<param>"`` for the extras) and returns a
``explorer.runs.config.SolveConfig``. Changing a widget never starts a solve; the page's
Run button does. Other pages pass their own ``prefix`` (e.g. "model_") to keep
separate settings.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer.operators.devices import DTYPES, available_devices, device_label
from explorer.runs.config import SolveConfig, default_solver
from explorer.solvers import COMMON_PARAMS, SOLVERS
from explorer.solvers.registry import ParamSpec
from explorer.ui.state import ensure, ensure_choice
from explorer.ui.widgets import param_widget

__all__ = ["solver_sidebar", "solver_config"]

_COMMON = {spec.name: spec for spec in COMMON_PARAMS}


def _on_solver(prefix: str) -> None:
    spec = SOLVERS.get(st.session_state.get(f"{prefix}solver"))
    if spec is None:
        return
    st.session_state[f"{prefix}tol"] = float(spec.default_tol)
    st.session_state[f"{prefix}max_iter"] = int(spec.default_max_iter)
    if st.session_state.get(f"{prefix}which") not in spec.which:
        st.session_state[f"{prefix}which"] = spec.which[0]


def solver_config(prefix: str = "") -> SolveConfig:
    """The SolveConfig from the current widget values (no widgets drawn)."""
    s = st.session_state
    name = s.get(f"{prefix}solver") or default_solver()
    spec = SOLVERS[name]
    extras = {p.name: s.get(f"{prefix}p_{name}_{p.name}", p.default) for p in spec.params}
    seed = s.get(f"{prefix}seed", 0)
    return SolveConfig(solver=name, k=int(s.get(f"{prefix}k", 4)), which=str(s.get(f"{prefix}which", spec.which[0])),
                       tol=float(s.get(f"{prefix}tol", spec.default_tol)),
                       max_iter=int(s.get(f"{prefix}max_iter", spec.default_max_iter)),
                       seed=None if seed is None else int(seed), device=str(s.get(f"{prefix}device", "cpu")),
                       dtype=str(s.get(f"{prefix}dtype", "float64")), extras=extras)


_WHICH_SVD = ParamSpec("which", "choice", "LA", "Which singular values: LA the largest, SA the smallest (they "
                       "converge much more slowly: raise the basis).", choices=("LA", "SA"))


def solver_sidebar(prefix: str = "", container: Any = None, *, n: int | None = None,
                   disabled: bool = False, kind: str = "eigen") -> SolveConfig:
    """Draw the solver widgets; return the resulting SolveConfig.

    ``n`` (the problem size; min(m, n) for an SVD problem) caps the k widget; ``disabled``
    greys the form out (e.g. while a solve runs, so the settings shown are the ones running).
    ``kind``: "eigen" offers the eigensolvers, "svd" (a rectangular matrix) the SVD solvers
    only (``SolverSpec.kind``); a selection of the other kind goes to that kind's default
    solver, with its default tol / max_iter.
    """
    box = container if container is not None else st.sidebar
    names = [name for name, spec in SOLVERS.items() if spec.kind == kind]
    key = f"{prefix}solver"
    before = st.session_state.get(key)
    ensure_choice(key, names, default_solver(kind))
    if before is not None and st.session_state[key] != before:  # the problem's kind changed
        _on_solver(prefix)
    spec = SOLVERS[st.session_state[key]]
    ensure(f"{prefix}tol", float(spec.default_tol))
    ensure(f"{prefix}max_iter", int(spec.default_max_iter))
    box.selectbox("Solver", names, key=key, format_func=lambda n: SOLVERS[n].label,
                  on_change=_on_solver, args=(prefix,), disabled=disabled,
                  help="Every solver registered in explorer.solvers.SOLVERS that applies to this problem"
                  + (" (a rectangular matrix: the SVD solvers)." if kind == "svd" else " (the eigensolvers)."))
    spec = SOLVERS[st.session_state[key]]
    box.caption(spec.summary)
    k_spec = _COMMON["k"]
    what = "singular triplets" if kind == "svd" else "eigenpairs"
    if n is not None:
        limit = f"min(m, n) = {n:,}" if kind == "svd" else f"n = {n:,}"
        k_spec = ParamSpec("k", "int", min(4, n), f"How many {what} to compute. At most {limit}.", minimum=1,
                           maximum=n)
    c1, c2 = box.columns(2)
    param_widget(k_spec, f"{prefix}k", container=c1, disabled=disabled, label=f"k ({what})")
    which_spec = _WHICH_SVD if kind == "svd" else _COMMON["which"]
    param_widget(which_spec, f"{prefix}which", container=c2, choices=spec.which, disabled=disabled)
    c1, c2 = box.columns(2)
    param_widget(_COMMON["tol"], f"{prefix}tol", container=c1, default=spec.default_tol, disabled=disabled)
    param_widget(_COMMON["max_iter"], f"{prefix}max_iter", container=c2, default=spec.default_max_iter,
                 disabled=disabled)
    c1, c3 = box.columns(2)
    param_widget(_COMMON["seed"], f"{prefix}seed", container=c1, label="random seed", disabled=disabled)
    devices = available_devices()
    ensure_choice(f"{prefix}device", devices)
    box.selectbox("device", devices, key=f"{prefix}device", format_func=device_label, disabled=disabled,
                 help="Where the operator and the solver's vectors live (explorer.operators.devices.available_devices).")
    ensure(f"{prefix}dtype", "float64")
    c3.selectbox("dtype", list(DTYPES), key=f"{prefix}dtype", disabled=disabled,
                 help="float32 is faster on GPUs but cannot reach tolerances much below 1e-6.")
    if spec.params:
        with box.expander(f"{spec.name} options", expanded=False):
            for p in spec.params:
                param_widget(p, f"{prefix}p_{spec.name}_{p.name}", disabled=disabled)
    return solver_config(prefix)
