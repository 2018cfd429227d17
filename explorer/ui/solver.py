"""The solver section: solver menu, common parameters, device/dtype, the solver's own options.

``solver_sidebar(prefix="")`` draws the widgets (keys ``f"{prefix}solver"``,
``f"{prefix}k"``, ``which``, ``tol``, ``max_iter``, ``seed``, ``device``, ``dtype`` and
``f"{prefix}p_<solver>_<param>"`` for the extras) and returns a
``explorer.runs.config.SolveConfig``. Changing a widget never starts a solve; the page's
Run button does. Other pages pass their own ``prefix`` (e.g. "model_") to keep
separate settings.

Interior eigenvalues (``spectral_mode``): once the solver's ``sigma`` is set, ``which`` switches
to LM and offers nearest / nearest above / nearest below sigma; once ``lower`` and ``upper`` are
set (spectrum slicing), ``which`` is fixed (ascending) and k becomes the field
``f"{prefix}interval_k"`` ("at most", default ``INTERVAL_K``), since the interval decides the
count. Clearing them gives the earlier ``which`` and k back.
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

__all__ = ["solver_sidebar", "solver_config", "spectral_mode"]

_COMMON = {spec.name: spec for spec in COMMON_PARAMS}
#: The default cap on an interval's count (the app's "at most" field; the solvers' k): large enough that a
#: first interval rarely hits it, small enough that n x count numbers fit any problem the app loads.
INTERVAL_K = 200


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
    k = s.get(f"{prefix}interval_k", INTERVAL_K) if spectral_mode(prefix, name) == "interval" else s.get(f"{prefix}k", 4)
    return SolveConfig(solver=name, k=int(k), which=str(s.get(f"{prefix}which", spec.which[0])),
                       tol=float(s.get(f"{prefix}tol", spec.default_tol)),
                       max_iter=int(s.get(f"{prefix}max_iter", spec.default_max_iter)),
                       seed=None if seed is None else int(seed), device=str(s.get(f"{prefix}device", "cpu")),
                       dtype=str(s.get(f"{prefix}dtype", "float64")), extras=extras)


_WHICH_SIGMA = ParamSpec("which", "choice", "LM", "With sigma (shift-invert): LM the k eigenvalues nearest sigma, "
                         "on either side; LA the k nearest above it; SA the k nearest below it.",
                         choices=("LM", "LA", "SA"))
_SIGMA_LABELS = {"LM": "LM: nearest sigma", "LA": "LA: nearest above sigma", "SA": "SA: nearest below sigma"}
_WHICH_INTERVAL = ParamSpec("which", "choice", "SA", "With an interval (spectrum slicing) the solve returns every "
                            "eigenvalue in [lower, upper), ascending: `which` has no meaning there.", choices=("SA",))


def spectral_mode(prefix: str, solver: str) -> str:
    """What the solver's options ask for: "interval" (``lower`` and ``upper`` set: spectrum slicing),
    "sigma" (shift-invert) or "plain" (an end of the spectrum, ``which``)."""
    s = st.session_state
    names = {p.name for p in SOLVERS[solver].params}

    def value(name: str) -> Any:
        return s.get(f"{prefix}p_{solver}_{name}") if name in names else None

    if value("lower") is not None and value("upper") is not None:
        return "interval"
    return "sigma" if value("sigma") is not None else "plain"


def _follow_mode(prefix: str, solver: str) -> str:
    """Set ``which`` when the mode changes: LM (the nearest) once sigma is given, SA (ascending) with an
    interval, and back to the plain choice when both are cleared. Runs before the which widget is drawn."""
    s = st.session_state
    mode = spectral_mode(prefix, solver)
    mode_key, which_key, plain_key = f"{prefix}_spectral_mode", f"{prefix}which", f"{prefix}_plain_which"
    before = s.get(mode_key, "plain")
    if mode != before:
        if before == "plain":
            s[plain_key] = s.get(which_key)
        if mode == "sigma":
            s[which_key] = "LM"
        elif mode == "interval":
            s[which_key] = "SA"
        else:
            plain = s.pop(plain_key, None)
            which = SOLVERS[solver].which
            s[which_key] = plain if plain in which else which[0]
        s[mode_key] = mode
    return mode


_WHICH_SVD = ParamSpec("which", "choice", "LA", "Which singular values: LA the largest, SA the smallest (they "
                       "converge much more slowly: raise the basis).", choices=("LA", "SA"))


def solver_sidebar(prefix: str = "", container: Any = None, *, n: int | None = None,
                   disabled: bool = False, kind: str = "eigen", matrix_free: bool = False) -> SolveConfig:
    """Draw the solver widgets; return the resulting SolveConfig.

    ``n`` (the problem size; min(m, n) for an SVD problem) caps the k widget; ``disabled``
    greys the form out (e.g. while a solve runs, so the settings shown are the ones running).
    ``kind``: "eigen" offers the eigensolvers, "svd" (a rectangular matrix) the SVD solvers
    only (``SolverSpec.kind``); a selection of the other kind goes to that kind's default
    solver, with its default tol / max_iter. ``matrix_free``: the operator exists only through
    products (a Hessian): no interval fields for lanczos / lobpcg (spectrum slicing counts with the
    inertia of an LDL^T factorization, which needs the matrix; a caption says so; chebyshev keeps
    them: its band-pass filter needs products only), and shift-invert's ``factorization`` offers
    only the inner Krylov solves (auto = MINRES, or CG).
    """
    if matrix_free:  # no interval fields here: an old value must not switch slicing on
        for solver_name, solver_spec in SOLVERS.items():
            for name in _INTERVAL:
                if _slices(solver_spec.name) and any(p.name == name for p in solver_spec.params) \
                        and st.session_state.get(f"{prefix}p_{solver_name}_{name}") is not None:
                    st.session_state[f"{prefix}p_{solver_name}_{name}"] = None
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
    mode = "plain" if kind == "svd" else _follow_mode(prefix, spec.name)
    c1, c2 = box.columns(2)
    if mode == "interval":  # its own field: the interval decides the count, this only caps it
        cap = ParamSpec("k", "int", INTERVAL_K if n is None else min(INTERVAL_K, n), "With an interval, every "
                        "eigenvalue in it is computed, however many: this is only the most accepted (a larger count "
                        "is refused with the number; the result keeps n x count numbers).", minimum=1, maximum=n)
        param_widget(cap, f"{prefix}interval_k", container=c1, disabled=disabled, label="at most (k)")
    else:
        param_widget(k_spec, f"{prefix}k", container=c1, disabled=disabled, label=f"k ({what})")
    if mode == "sigma":
        param_widget(_WHICH_SIGMA, f"{prefix}which", container=c2, disabled=disabled, label="which (near sigma)",
                     format_func=_SIGMA_LABELS.get)
    elif mode == "interval":
        param_widget(_WHICH_INTERVAL, f"{prefix}which", container=c2, disabled=True, label="which",
                     format_func=lambda _: "the interval, ascending")
    else:
        which_spec = _WHICH_SVD if kind == "svd" else _COMMON["which"]
        param_widget(which_spec, f"{prefix}which", container=c2, choices=spec.which, disabled=disabled)
    if mode != "plain":
        box.caption(_mode_caption(prefix, spec.name, mode, matrix_free))
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
        with box.expander(f"{spec.name} options", expanded=mode != "plain"):
            for p in spec.params:
                if matrix_free and p.name in _INTERVAL and _slices(spec.name):
                    continue
                choices = _MATRIX_FREE_FACTORIZATIONS if matrix_free and p.name == "factorization" else None
                param_widget(p, f"{prefix}p_{spec.name}_{p.name}", disabled=disabled, choices=choices)
            if matrix_free and _slices(spec.name):
                st.caption("No interval here: spectrum slicing counts the eigenvalues in [lower, upper) with the "
                           "inertia of an LDL^T factorization, and this operator exists only through products "
                           "(no matrix to factor). Use sigma with a k (the k eigenvalues nearest it), or chebyshev, "
                           "whose band-pass filter needs only products.")
            problem = _spectral_problem(prefix, spec.name)
            if problem:
                st.warning(problem, icon=":material/warning:")
    return solver_config(prefix)


_INTERVAL = ("lower", "upper")


def _slices(solver: str) -> bool:
    """True where an interval means inertia spectrum slicing (it needs a factorization): lanczos, lobpcg."""
    names = {p.name for p in SOLVERS[solver].params}
    return {"lower", "upper", "factorization"} <= names
_MATRIX_FREE_FACTORIZATIONS = ("auto", "minres", "cg")


def _mode_caption(prefix: str, solver: str, mode: str, matrix_free: bool = False) -> str:
    s = st.session_state
    if mode == "sigma":
        sigma = s.get(f'{prefix}p_{solver}_sigma')
        if "factorization" not in {p.name for p in SOLVERS[solver].params}:  # eigh: every eigenvalue, then the nearest
            return (f"Near sigma = {sigma:g}: the k eigenvalues nearest it, picked from the whole dense spectrum "
                    "(clear sigma for an end of the spectrum).")
        if matrix_free:
            return (f"Shift-invert at sigma = {sigma:g}: the k eigenvalues nearest it. This operator has no matrix to "
                    "factor, so every application of (A \u2212 \u03c3I)\u207b\u00b9 is an inner MINRES solve (tens "
                    "of products each; clear sigma to switch it off).")
        return (f"Shift-invert at sigma = {sigma:g}: the k eigenvalues nearest it, "
                "through a factorization of A \u2212 \u03c3B (options below; clear sigma to switch it off).")
    lower, upper = s.get(f'{prefix}p_{solver}_lower'), s.get(f'{prefix}p_{solver}_upper')
    if "factorization" not in {p.name for p in SOLVERS[solver].params}:  # chebyshev: a band-pass filter
        return (f"Every eigenvalue in [{lower:g}, {upper:g}) by a band-pass Chebyshev-Jackson filter (products "
                "only); counted by Sylvester's law of inertia where the matrix is assembled, else estimated from the "
                "filter's trace (clear lower and upper to switch it off).")
    return (f"Spectrum slicing: every eigenvalue in [{lower:g}, {upper:g}), counted by Sylvester's law of inertia "
            "so that none is missed (clear lower and upper to switch it off).")


def _spectral_problem(prefix: str, solver: str) -> str | None:
    """A line about sigma / interval settings the solver will refuse (both given, one end only), or None."""
    s = st.session_state
    names = {p.name for p in SOLVERS[solver].params}
    if not {"lower", "upper"} <= names:
        return None
    sigma, lower, upper = (s.get(f"{prefix}p_{solver}_{name}") if name in names else None
                           for name in ("sigma", "lower", "upper"))
    if (lower is None) != (upper is None):
        return "Spectrum slicing needs both ends: set `lower` and `upper` (or clear both)."
    if lower is not None and upper is not None and sigma is not None:
        return "Both sigma and an interval are set, but a solve takes one or the other: clear sigma or the interval."
    if lower is not None and upper is not None and not lower < upper:
        return f"The interval needs lower < upper (got [{lower:g}, {upper:g}])."
    return None
