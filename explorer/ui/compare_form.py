"""The Compare page's form: shared settings, two to five solver configurations, presets.

Widget keys (for AppTest and the browser tests): ``cmp_preset``, ``cmp_count``,
``cmp_k``, ``cmp_sigma``, ``cmp_which``, ``cmp_tol``, ``cmp_max_iter``, ``cmp_budget``, ``cmp_seed``,
``cmp_dtype``, ``cmp_mode``; per configuration i (0-based) ``cmp_solver_{i}``,
``cmp_label_{i}`` and ``cmp{i}_{solver}_{param}`` for the solver's own parameters
(``explorer.ui.widgets.param_widget`` from its ``ParamSpec``).

``cmp_sigma`` (empty = off) compares the runs on the k eigenvalues nearest sigma: ``which`` then
switches to LM and offers nearest / nearest above / nearest below (clearing sigma gives the earlier
``which`` back), every run whose solver takes a sigma gets it (``CompareSettings.resolve``), and a run
whose solver has none is flagged in its column (the Run button refuses it with the same message).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer.analysis.compare import MAX_CONFIGS, MIN_CONFIGS, CompareSettings, RunConfig, sigma_solvers
from explorer.solvers.shift_invert import SIGMA_WHICH
from explorer.solvers import COMMON_PARAMS, SOLVERS
from explorer.solvers.registry import ParamSpec
from explorer.ui.state import ensure, ensure_choice
from explorer.ui.widgets import param_widget

__all__ = ["PRESETS", "available_presets", "apply_preset", "settings_form", "configs_form", "read_settings",
           "read_configs", "solver_names"]

_COMMON = {spec.name: spec for spec in COMMON_PARAMS}

#: name -> (which, [(solver, params), ...]); only presets whose solvers are registered are offered.
PRESETS: dict[str, tuple[str, list[tuple[str, dict[str, Any]]]]] = {
    "Lanczos: full vs no re-orthogonalization": (
        "LA", [("lanczos", {"reorthogonalization": "full"}), ("lanczos", {"reorthogonalization": "none"})]),
    "Lanczos: full vs partial vs none": (
        "LA", [("lanczos", {"reorthogonalization": "full"}), ("lanczos", {"reorthogonalization": "partial"}),
               ("lanczos", {"reorthogonalization": "none"})]),
    "LOBPCG: basic vs ortho": ("SA", [("lobpcg", {"method": "basic"}), ("lobpcg", {"method": "ortho"})]),
    "LOBPCG: without vs with Jacobi": (
        "SA", [("lobpcg", {"preconditioner": "none"}), ("lobpcg", {"preconditioner": "jacobi"})]),
    "Power iteration: plain vs momentum": (
        "LM", [("power_iteration", {"momentum": 0.0}), ("power_iteration", {"momentum": 0.9})]),
    "Lanczos vs LOBPCG": ("LA", [("lanczos", {}), ("lobpcg", {})]),
    "Lanczos vs power vs randomized": ("LM", [("lanczos", {}), ("power_iteration", {}), ("randomized_svd", {})]),
    "Iterative vs dense eigh": ("LA", [("lobpcg", {}), ("eigh", {})]),
    "Chebyshev filter vs Lanczos (smallest)": ("SA", [("chebyshev", {}), ("lanczos", {})]),
    "Chebyshev filter: degree 8 vs 20 vs 40": (
        "SA", [("chebyshev", {"degree": 8}), ("chebyshev", {"degree": 20}), ("chebyshev", {"degree": 40})]),
    # SVD problems (a rectangular matrix): the SVD solvers
    "Golub-Kahan: full vs one-sided re-orthogonalization": (
        "LA", [("golub_kahan", {"reorthogonalization": "full"}),
               ("golub_kahan", {"reorthogonalization": "one-sided"})]),
    "Golub-Kahan: small vs large basis (smallest)": (
        "SA", [("golub_kahan", {"max_basis": 20}), ("golub_kahan", {"max_basis": 80})]),
}


def available_presets(kind: str = "eigen") -> list[str]:
    """Presets whose solvers are all registered and of ``kind`` ("eigen", or "svd" for a rectangular matrix)."""
    return [name for name, (_, runs) in PRESETS.items()
            if all(solver in SOLVERS and SOLVERS[solver].kind == kind for solver, _ in runs)]


def solver_names(kind: str = "eigen") -> list[str]:
    """The solvers a configuration may pick for a problem of ``kind``."""
    return [name for name, spec in SOLVERS.items() if spec.kind == kind]


def _param_key(i: int, solver: str, name: str) -> str:
    return f"cmp{i}_{solver}_{name}"


def apply_preset(name: str | None = None) -> None:
    """Callback: fill the form with a preset (default: the one selected in ``cmp_preset``)."""
    name = name or st.session_state.get("cmp_preset")
    if name not in PRESETS:
        return
    which, runs = PRESETS[name]
    st.session_state["cmp_count"] = len(runs)
    if st.session_state.get("cmp_sigma") is None:
        st.session_state["cmp_which"] = which
    else:  # near sigma the preset's end has no meaning; it comes back when sigma is cleared
        st.session_state["_cmp_plain_which"] = which
    for i, (solver, params) in enumerate(runs):
        st.session_state[f"cmp_solver_{i}"] = solver
        st.session_state[f"cmp_label_{i}"] = ""
        for spec in SOLVERS[solver].params:
            st.session_state[_param_key(i, solver, spec.name)] = params.get(spec.name, spec.default)


def _init(kind: str = "eigen") -> None:
    """The first preset of ``kind``, once per session and again when the problem's kind changes."""
    if "cmp_count" in st.session_state and st.session_state.get("_cmp_kind", "eigen") == kind:
        return
    st.session_state["_cmp_kind"] = kind
    presets = available_presets(kind)
    if presets:
        st.session_state["cmp_preset"] = presets[0]
        apply_preset(presets[0])
    else:  # pragma: no cover - the registry always has eigh and at least one iterative solver
        st.session_state["cmp_count"] = MIN_CONFIGS


_SIGMA = ParamSpec("sigma", "float", None, "Compare on the k eigenvalues nearest sigma instead of an end of the "
                   "spectrum: lanczos and lobpcg by shift-invert (a factorization of A - sigma B), eigh from the whole "
                   "dense spectrum; solvers without a sigma cannot take part. Empty = off.", optional=True,
                   placeholder="off (an end of the spectrum)")
_WHICH_SIGMA = ParamSpec("which", "choice", "LM", "Near sigma: LM the k nearest on either side, LA the k nearest "
                         "above, SA the k nearest below.", choices=SIGMA_WHICH)
_SIGMA_LABELS = {"LM": "LM: nearest sigma", "LA": "LA: nearest above sigma", "SA": "SA: nearest below sigma"}


def _follow_sigma() -> bool:
    """``which`` follows the shared sigma (LM once it is set; the earlier choice back once cleared). True near sigma."""
    s = st.session_state
    near = s.get("cmp_sigma") is not None
    if near != s.get("_cmp_near", False):
        if near:
            s["_cmp_plain_which"] = s.get("cmp_which")
            s["cmp_which"] = "LM"
        else:
            plain = s.pop("_cmp_plain_which", None)
            s["cmp_which"] = plain if plain in _COMMON["which"].choices else "LA"
        s["_cmp_near"] = near
    return near


def settings_form(container: Any = None, *, n: int | None = None, disabled: bool = False,
                  kind: str = "eigen") -> None:
    """The shared settings: preset, k, which, tol, max_iter, matvec budget, seed, dtype, mode. ``kind``
    "svd" (a rectangular matrix; ``n`` = min(m, n)) offers the SVD presets and solvers only."""
    _init(kind)
    box = container if container is not None else st
    presets = available_presets(kind)
    if presets:
        ensure_choice("cmp_preset", presets)
        box.selectbox("Preset", presets, key="cmp_preset", on_change=apply_preset, disabled=disabled,
                      help="Fill the configurations below with a classic comparison; then change anything.")
    k_spec = _COMMON["k"]
    if n is not None:
        k_spec = ParamSpec("k", "int", min(4, n), k_spec.help, minimum=1, maximum=n)
    if kind == "svd":
        st.session_state["cmp_sigma"] = None  # singular values have no sigma here
    near = kind != "svd" and _follow_sigma()
    c1, c2, c3, c4 = box.columns(4)
    param_widget(k_spec, "cmp_k", container=c1, disabled=disabled)
    if kind != "svd":
        param_widget(_SIGMA, "cmp_sigma", container=c2, disabled=disabled)
    if near:
        param_widget(_WHICH_SIGMA, "cmp_which", container=c3, disabled=disabled, label="which (near sigma)",
                     format_func=_SIGMA_LABELS.get)
    else:
        param_widget(_COMMON["which"], "cmp_which", container=c3, disabled=disabled,
                     choices=("LA", "SA") if kind == "svd" else None)
    param_widget(_COMMON["tol"], "cmp_tol", container=c4, disabled=disabled)
    if near:
        box.caption(f"Near sigma = {st.session_state['cmp_sigma']:g}: every run looks for the k eigenvalues "
                    f"{_SIGMA_LABELS[st.session_state['cmp_which']].split(': ')[1]} and is judged against the exact "
                    f"ones there. Solvers that can: {', '.join(sigma_solvers(kind))} (a run's own sigma or interval "
                    "takes precedence).")
    c1, c2, c3 = box.columns(3)
    param_widget(ParamSpec("budget", "int", 2000, "Matvec budget of every run (0 = none): a run stops at the "
                           "first iteration that reaches it.", minimum=0, maximum=10_000_000), "cmp_budget",
                 label="matvec budget", container=c1, disabled=disabled)
    param_widget(ParamSpec("max_iter", "int", 1000, "Iteration limit of every run.", minimum=1,
                           maximum=1_000_000), "cmp_max_iter", label="max iterations", container=c2,
                 disabled=disabled)
    param_widget(_COMMON["seed"], "cmp_seed", container=c3, disabled=disabled)
    c1, c2 = box.columns(2)
    param_widget(ParamSpec("dtype", "choice", "float64", "Working precision of every run.",
                           choices=("float64", "float32")), "cmp_dtype", label="dtype", container=c1,
                 disabled=disabled)
    param_widget(ParamSpec("mode", "choice", "sequential", "sequential: one after another (fair times); "
                           "parallel: side by side in threads (times include the sharing).",
                           choices=("sequential", "parallel")), "cmp_mode", label="run", container=c2,
                 disabled=disabled)
    count_spec = ParamSpec("count", "int", 2, "How many configurations to compare.", minimum=MIN_CONFIGS,
                           maximum=MAX_CONFIGS)
    param_widget(count_spec, "cmp_count", label="configurations", container=box, disabled=disabled)


def configs_form(container: Any = None, *, disabled: bool = False, kind: str = "eigen") -> None:
    """One column per configuration: solver (of the problem's ``kind``), its own parameters, an optional label."""
    _init(kind)
    box = container if container is not None else st
    count = int(st.session_state.get("cmp_count", MIN_CONFIGS))
    names = solver_names(kind)
    cols = box.columns(count)
    for i in range(count):
        with cols[i]:
            st.markdown(f"**Run {i + 1}**")
            ensure_choice(f"cmp_solver_{i}", names, names[min(i, len(names) - 1)])
            st.selectbox("Solver", names, key=f"cmp_solver_{i}", format_func=lambda n: SOLVERS[n].label,
                         disabled=disabled)
            spec = SOLVERS[st.session_state[f"cmp_solver_{i}"]]
            sigma = st.session_state.get("cmp_sigma") if kind != "svd" else None
            if sigma is not None and spec.name not in sigma_solvers(kind):
                st.warning(f"{spec.label} has no sigma: it finds an end of the spectrum, not the eigenvalues near "
                           f"sigma = {sigma:g}. Pick {', '.join(sigma_solvers(kind))} for this run, or clear sigma.",
                           icon=":material/block:")
            for param in spec.params:
                param_widget(param, _param_key(i, spec.name, param.name), disabled=disabled)
            ensure(f"cmp_label_{i}", "")
            st.text_input("Label", key=f"cmp_label_{i}", placeholder="auto", disabled=disabled)


def read_settings() -> CompareSettings:
    """CompareSettings from the current widget values (no widgets drawn)."""
    s = st.session_state
    budget = int(s.get("cmp_budget", 2000) or 0)
    seed = s.get("cmp_seed", 0)
    return CompareSettings(k=int(s.get("cmp_k", 4)), which=str(s.get("cmp_which", "LA")),
                           tol=float(s.get("cmp_tol", 1e-6)), max_iter=int(s.get("cmp_max_iter", 1000)),
                           budget=budget or None, seed=None if seed is None else int(seed),
                           dtype=str(s.get("cmp_dtype", "float64")), mode=s.get("cmp_mode", "sequential"),
                           sigma=None if s.get("cmp_sigma") is None else float(s["cmp_sigma"]))


def read_configs() -> list[RunConfig]:
    """The RunConfigs from the current widget values."""
    s = st.session_state
    configs = []
    for i in range(int(s.get("cmp_count", MIN_CONFIGS))):
        solver = s.get(f"cmp_solver_{i}") or next(iter(SOLVERS))
        spec = SOLVERS[solver]
        params = {}
        for param in spec.params:
            value = s.get(_param_key(i, solver, param.name), param.default)
            if value is not None:
                params[param.name] = value
        configs.append(RunConfig(solver, params, label=str(s.get(f"cmp_label_{i}", "") or "").strip()))
    return configs
