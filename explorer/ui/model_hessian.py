"""The "Loss Hessian" tab of the Model page: settings, Run, live view, results.

Three analyses of the loss curvature of the loaded model over its data, each run in the
background through ``explorer.ui.live`` (key ``"model"``) and drawn live by its panel:

* **Eigenvalues**: any registry solver (Lanczos by default) on the
  ``HessianOperator`` / ``GGNOperator``; the result is logged in the session's run history
  and shown with the per-layer shares of the eigenvectors.
* **Spectral density** (SLQ) and **trace** (Hutchinson): ``explorer.models.analysis``; the
  live panel shows the extreme Ritz values per probe (SLQ) or the running trace with
  its standard error (Hutchinson).

Exact eigenvalues, when known, feed the live error panel: the sample manifests carry
the dense Hessian's extremes, and the "Exact spectrum" expander computes the whole
spectrum of small operators (``torch.func.hessian`` + ``eigvalsh``) on request.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st
import torch

from explorer.operators.devices import DTYPES, parse_device, parse_dtype
from explorer.runs.jobs import JobView, SolveJob, friendly_error
from explorer.models import GGNOperator, HessianOperator, ModelInputError, dense_hessian, select_parameters
from explorer.models.analysis import hutchinson_trace, spectral_density
from explorer.plots.figures import reference_match, wanted_reference
from explorer.runs.record import run_from_view
from explorer.solvers import solve
from explorer.tracking import Tracker
from explorer.ui import live, results, solver
from explorer.ui.charts import show
from explorer.plots.models import density_figure, layer_share_figure, trace_figure
from explorer.ui.model_source import ModelInputs
from explorer.ui.state import add_run, ensure, get_run, next_run_id

__all__ = ["KEY", "hessian_section", "build_operator", "operator_settings", "sigma_problem"]

KEY = "model"
PREFIX = "model_"
ERROR = "model_error"
LAST = "model_last"  # {"kind": "eigen" | "slq" | "trace", ...} of the latest finished analysis
INPUTS = "_model_inputs"  # the ModelInputs of the latest script run (read by the Run callback)
EXACT = "_model_exact"  # {spec: np.ndarray of every exact eigenvalue}
DENSE_LIMIT = 3000  # largest n for the on-request dense spectrum
# Above this many samples the page processes the data in chunks of CHUNK and does not keep the
# gradient graph between products (memory bounded by one chunk; each HVP then recomputes it).
CACHE_LIMIT, CHUNK = 4096, 1024
ANALYSES = {"eigen": "Eigenvalues (solver)", "slq": "Spectral density (SLQ)", "trace": "Trace (Hutchinson)"}


def _s(name: str, default: Any = None) -> Any:
    return st.session_state.get(PREFIX + name, default)


def operator_settings() -> dict[str, Any]:
    """The operator's settings from the widgets (plain values)."""
    sampling = _s("sampling", "full")
    patterns = tuple(p.strip() for p in str(_s("params", "") or "").split(",") if p.strip())
    return {"curvature": _s("curvature", "hessian"), "loss": _s("loss", "cross_entropy"),
            "params": None if not patterns else (patterns[0] if len(patterns) == 1 else patterns),
            "minibatch": int(_s("minibatch", 64)) if sampling == "minibatch" else None,
            "mb_seed": int(_s("mb_seed", 0) or 0), "dtype": _s("dtype", "float32"), "device": _s("device", "cpu")}


def _spec_key(inputs: ModelInputs, settings: dict[str, Any]) -> tuple:
    return (*inputs.cache_key, settings["curvature"], settings["loss"], settings["params"] or "",
            settings["minibatch"] or 0, settings["mb_seed"] if settings["minibatch"] else 0)


def build_operator(inputs: ModelInputs, settings: dict[str, Any], *, dtype: torch.dtype | None = None) -> Any:
    """The HessianOperator / GGNOperator for these inputs and settings (raises ModelInputError)."""
    if inputs.model is None:
        raise ModelInputError("load a model first: a .pt2 file written by torch.export.save")
    if inputs.data is None:
        raise ModelInputError("load a data file (.pt, .safetensors or .npz with inputs and targets) for the loss")
    cls = GGNOperator if settings["curvature"] == "ggn" else HessianOperator
    used = settings["minibatch"] or len(inputs.data)
    large = used > CACHE_LIMIT and inputs.model.input_spec.fixed_batch is None
    return cls(inputs.model, inputs.data, settings["loss"], settings["params"], minibatch=settings["minibatch"],
               seed=settings["mb_seed"], dtype=dtype or parse_dtype(settings["dtype"]),
               device=parse_device(settings["device"]), batch_size=CHUNK if large else None, cache=not large)


def _known_extremes(inputs: ModelInputs, settings: dict[str, Any]) -> dict[str, list[float]] | None:
    """Dense-Hessian extremes from the sample manifest, when the settings are the manifest's."""
    manifest = inputs.manifest
    if not manifest or settings["curvature"] != "hessian" or settings["params"] or settings["minibatch"]:
        return None
    if settings["loss"] != manifest.get("loss"):
        return None
    return {"LA": manifest.get("hessian_top5", []), "SA": manifest.get("hessian_bottom3", [])}


def _reference(inputs: ModelInputs, settings: dict[str, Any], k: int, which: str,
               spectral: dict[str, Any] | None = None) -> np.ndarray | None:
    """The wanted exact eigenvalues: from the computed spectrum (near sigma with ``spectral``), else the
    manifest's extremes for an end of the spectrum."""
    spectral = spectral or {}
    exact = st.session_state.get(EXACT, {}).get(_spec_key(inputs, settings))
    if exact is not None:
        return wanted_reference(exact, k, which, **spectral)
    if any(value is not None for value in spectral.values()):
        return None  # the manifest knows only the ends
    extremes = _known_extremes(inputs, settings)
    if extremes and which in extremes and k <= len(extremes[which]):
        return np.asarray(extremes[which][:k], dtype=float)
    return None


def _snippet(inputs: ModelInputs, settings: dict[str, Any], call: str) -> str:
    cls = "GGNOperator" if settings["curvature"] == "ggn" else "HessianOperator"
    model_path = inputs.model_path or "model.pt2"
    data_path = inputs.data_path or "data.safetensors"
    args = [f"loss={settings['loss']!r}"]
    if settings["params"]:
        args.append(f"params={settings['params']!r}")
    if settings["minibatch"]:
        args += [f"minibatch={settings['minibatch']}", f"seed={settings['mb_seed']}"]
    args.append(f"dtype=torch.{settings['dtype']}")
    return "\n".join([
        "import torch",
        f"from explorer.models import load_exported_model, load_dataset, {cls}",
        "from explorer.models.analysis import spectral_density, hutchinson_trace",
        "from explorer.solvers import solve",
        "",
        f"model = load_exported_model({model_path!r})",
        f"data = load_dataset({data_path!r})",
        f"H = {cls}(model, data, {', '.join(args)})",
        call,
    ])


def sigma_problem(config: Any, dtype: str) -> str | None:
    """Why a shift-invert run on this matrix-free operator would not work, or None.

    A Hessian has no matrix to factor, so ``(H - sigma I)^-1`` is an inner MINRES (or CG) solve
    with relative tolerance ``max(1e-10, 100 eps)``: in float32 that is ~1e-5, the transformed
    operator is only that consistent, and the outer Krylov run stalls until its iteration limit
    (each step one inner solve of tens of HVPs) instead of converging. eigh (the dense spectrum,
    then the nearest) has no inner solve.
    """
    if config.extras.get("sigma") is None or "factorization" not in config.extras or dtype != "float32":
        return None
    return ("Shift-invert on the Hessian applies (H \u2212 \u03c3I)\u207b\u00b9 by an inner MINRES solve, which in "
            "float32 stops at a relative residual near 1e-5: the transformed operator is then too inexact for the "
            "outer solve to converge, and it would run to its iteration limit (minutes of HVPs). Switch dtype to "
            "float64, or clear sigma (or use eigh, which assembles the matrix and takes the nearest of its whole "
            "spectrum).")


# -- starting a run -----------------------------------------------------------------
def _start() -> None:
    st.session_state[ERROR] = None
    try:
        inputs: ModelInputs = st.session_state[INPUTS]
        settings = operator_settings()
        analysis = _s("analysis", "eigen")
        # an error is shown only while the settings that caused it are unchanged
        st.session_state[ERROR + "_for"] = (_spec_key(inputs, settings), analysis)
        op = build_operator(inputs, settings)
        started = time.time()
        label = f"{ANALYSES[analysis].split(' (')[0].lower()} of the {op.curvature} ({inputs.label})"
        if analysis == "eigen":
            config = solver.solver_config(PREFIX)
            problem = sigma_problem(config, settings["dtype"])
            if problem:
                raise ModelInputError(problem)
            reference = _reference(inputs, settings, config.k, config.which, config.spectral())
            snippet = _snippet(inputs, settings, f"result = solve({config.solver!r}, H, {config.k}, "
                               + ", ".join(f"{k}={v!r}" for k, v in config.solver_kwargs().items()) + ")")
            params = {**config.params(), "device": settings["device"], "dtype": settings["dtype"]}

            def target(tracker: Tracker) -> Any:
                try:
                    return solve(config.solver, op, config.k, tracker=tracker, **config.solver_kwargs())
                finally:
                    op.release()  # the cached graph; layer shares need only the parameter layout

            def on_finish(job: SolveJob, view: JobView) -> None:
                run = run_from_view(next_run_id(), view, solver=config.solver, problem=f"{op.curvature}: {inputs.label}",
                                    n=op.shape[0], params=params, reference=reference, page=KEY, started_at=started,
                                    extra={"snippet": snippet, "description": op.description,
                                           "error_detail": job.error_detail})
                add_run(run)
                st.session_state[LAST] = {"kind": "eigen", "run_id": run.run_id, "operator": op,
                                          "description": op.description}

            exact = st.session_state.get(EXACT, {}).get(_spec_key(inputs, settings))
            live.start_job(KEY, target, label=label, params=params, on_finish=on_finish,
                           meta={"reference": reference, "tol": config.tol, "dtype": settings["dtype"],
                                 "spectrum": exact, "match": reference_match(params)})
            return
        seed = int(_s("an_seed", 0) or 0)
        if analysis == "slq":
            probes, steps = int(_s("slq_probes", 8)), int(_s("slq_steps", 60))
            snippet = _snippet(inputs, settings, f"density = spectral_density(H, n_probes={probes}, n_steps={steps}, "
                               f"seed={seed})")

            def run_it(tracker: Tracker) -> Any:
                return spectral_density(op, n_probes=probes, n_steps=steps, seed=seed, tracker=tracker)
        else:
            probes = int(_s("tr_probes", 100))
            rtol = float(_s("tr_rtol", 0.01))
            snippet = _snippet(inputs, settings, f"trace = hutchinson_trace(H, n_probes={probes}, rtol={rtol}, "
                               f"seed={seed})")

            def run_it(tracker: Tracker) -> Any:
                return hutchinson_trace(op, n_probes=probes, rtol=rtol, seed=seed, tracker=tracker)

        def target(tracker: Tracker) -> Any:
            try:
                return run_it(tracker)
            finally:
                op.release()

        def on_finish(job: SolveJob, view: JobView) -> None:
            st.session_state[LAST] = {"kind": analysis, "result": view.result, "error": view.error,
                                      "description": op.description, "snippet": snippet, "spec": _spec_key(inputs, settings),
                                      "stop_reason": view.stop_reason}

        live.start_job(KEY, target, label=label, params={"analysis": analysis, "seed": seed}, on_finish=on_finish,
                       meta={"reference": None, "tol": None, "dtype": settings["dtype"]})
    except Exception as error:  # noqa: BLE001 - shown next to Run; the page keeps working
        st.session_state[ERROR] = friendly_error(error)


def _compute_exact(inputs: ModelInputs, settings: dict[str, Any]) -> None:
    st.session_state[ERROR] = None
    st.session_state[ERROR + "_for"] = (_spec_key(inputs, settings), _s("analysis", "eigen"))
    try:
        if settings["curvature"] == "ggn":
            dense = build_operator(inputs, settings, dtype=torch.float64).to_dense()
        else:
            dense = dense_hessian(inputs.model, inputs.data, settings["loss"], settings["params"],
                                  minibatch=settings["minibatch"], seed=settings["mb_seed"], max_parameters=DENSE_LIMIT)
        values = torch.linalg.eigvalsh(0.5 * (dense + dense.T)).numpy()
        st.session_state.setdefault(EXACT, {})[_spec_key(inputs, settings)] = values
    except Exception as error:  # noqa: BLE001
        st.session_state[ERROR] = friendly_error(error)


# -- drawing --------------------------------------------------------------------------
def _settings_widgets(inputs: ModelInputs, disabled: bool) -> tuple[dict[str, Any], Any]:
    ensure(PREFIX + "analysis", "eigen")
    ensure(PREFIX + "curvature", "hessian")
    if st.session_state.get(PREFIX + "loss_for") != inputs.cache_key:
        st.session_state[PREFIX + "loss"] = inputs.default_loss
        st.session_state[PREFIX + "loss_for"] = inputs.cache_key
    ensure(PREFIX + "params", "")
    ensure(PREFIX + "sampling", "full")
    ensure(PREFIX + "minibatch", 64)
    ensure(PREFIX + "mb_seed", 0)
    ensure(PREFIX + "dtype", "float32")
    ensure(PREFIX + "k", 5)
    ensure(PREFIX + "which", "LA")
    ensure(PREFIX + "tol", 1e-5)
    st.radio("Analysis", list(ANALYSES), key=PREFIX + "analysis", format_func=ANALYSES.get, horizontal=True,
             disabled=disabled, help="Eigenvalues: extreme eigenpairs by an iterative solver. Spectral density: "
             "the whole spectrum's shape by stochastic Lanczos quadrature. Trace: the sum of all eigenvalues.")
    c1, c2, c3 = st.columns(3)
    c1.radio("Curvature", ["hessian", "ggn"], key=PREFIX + "curvature", disabled=disabled, horizontal=True,
             format_func={"hessian": "Hessian", "ggn": "Gauss-Newton (GGN)"}.get,
             help="The loss Hessian, or the positive semi-definite Gauss-Newton matrix J^T H_out J.")
    c2.selectbox("Loss", ["cross_entropy", "mse"], key=PREFIX + "loss", disabled=disabled,
                 format_func={"cross_entropy": "cross-entropy", "mse": "mean squared error"}.get,
                 help="Cross-entropy takes class indices (or class probabilities); MSE takes one target per output.")
    names = [n for n, _ in inputs.model.named_parameters()] if inputs.model is not None else []
    c3.text_input("Parameters (name or glob; empty = all)", key=PREFIX + "params", disabled=disabled,
                  placeholder="e.g. layers.0.*  or  *.weight", help="A glob pattern (layers.0.*, *.weight) or a module "
                  "name (layers.2); several separated by commas. The operator is the block of the Hessian over these.")
    pattern = (st.session_state.get(PREFIX + "params") or "").strip()
    chosen: list[str] = []
    if names:
        try:
            chosen = select_parameters(names, [p for p in pattern.split(",") if p.strip()] if pattern else None)
            total = sum(p.numel() for n, p in inputs.model.named_parameters() if n in chosen)
            c3.caption(f"{len(chosen)} of {len(names)} tensors, n = {total:,}")
        except ModelInputError as error:
            c3.warning(str(error), icon=":material/filter_alt_off:")
    c1, c2, c3 = st.columns(3)
    c1.radio("Data", ["full", "minibatch"], key=PREFIX + "sampling", disabled=disabled, horizontal=True,
             format_func={"full": "full data set (exact)", "minibatch": "mini-batch (stochastic)"}.get)
    if st.session_state[PREFIX + "sampling"] == "minibatch":
        n_data = len(inputs.data) if inputs.data is not None else 1
        if int(st.session_state[PREFIX + "minibatch"]) > n_data:
            st.session_state[PREFIX + "minibatch"] = n_data
        c2.number_input("Mini-batch size", min_value=1, max_value=max(1, n_data), step=1, key=PREFIX + "minibatch",
                        disabled=disabled, help="Samples drawn without replacement, once per run, with the seed.")
        c3.number_input("Mini-batch seed", min_value=0, step=1, key=PREFIX + "mb_seed", disabled=disabled)
    return operator_settings(), chosen


def hessian_section(inputs: ModelInputs) -> None:
    """The whole tab."""
    st.session_state[INPUTS] = inputs
    running = live.is_running(KEY)
    for kind in ("model", "data"):
        if kind in inputs.errors:
            st.error(f"**{kind.title()} file:** {inputs.errors[kind]}", icon=":material/error:")
    if inputs.model is not None:
        spec = inputs.model.input_spec
        st.markdown(f"**Model** `{inputs.model.name}`: input {spec.describe()}, {inputs.model.n_parameters:,} "
                    f"parameters in {len(inputs.model.named_parameters())} tensors"
                    + (f"; **data** {inputs.data.describe()}" if inputs.data is not None else ""))
        with st.expander("Parameters", icon=":material/view_list:"):
            st.dataframe(inputs.model.parameter_table(), hide_index=True, key="model_param_table")
    if inputs.model is None or inputs.data is None:
        st.info("Choose a sample, or upload an exported model (.pt2) and its data to look at the loss Hessian.",
                icon=":material/upload_file:")
        return
    settings, _chosen = _settings_widgets(inputs, running)
    analysis = st.session_state[PREFIX + "analysis"]
    left, right = st.columns([2, 3])
    with left:
        if analysis == "eigen":
            with st.container(border=True):
                st.markdown("**Solver**")
                config = solver.solver_sidebar(PREFIX, container=st.container(), disabled=running, matrix_free=True)
                problem = sigma_problem(config, settings["dtype"])
                if problem:
                    st.warning(problem, icon=":material/warning:")
        else:
            with st.container(border=True):
                st.markdown("**Estimator**")
                ensure(PREFIX + "an_seed", 0)
                ensure(PREFIX + "slq_probes", 8)
                ensure(PREFIX + "slq_steps", 60)
                ensure(PREFIX + "tr_probes", 100)
                ensure(PREFIX + "tr_rtol", 0.01)
                a, b = st.columns(2)
                if analysis == "slq":
                    a.number_input("probe vectors", 1, 200, step=1, key=PREFIX + "slq_probes", disabled=running,
                                   help="Random Rademacher vectors; the density's noise falls as 1/probes.")
                    b.number_input("Lanczos steps per probe", 2, 500, step=1, key=PREFIX + "slq_steps",
                                   disabled=running, help="Quadrature nodes per probe; 50-100 resolve the bulk.")
                else:
                    a.number_input("max probe vectors", 2, 100_000, step=10, key=PREFIX + "tr_probes",
                                   disabled=running, help="One HVP each.")
                    b.number_input("stop at relative std. error", 0.0001, 1.0, step=0.005, format="%.4f",
                                   key=PREFIX + "tr_rtol", disabled=running)
                a, b = st.columns(2)
                a.number_input("random seed", 0, step=1, key=PREFIX + "an_seed", disabled=running)
                b.selectbox("dtype", list(DTYPES), key=PREFIX + "dtype", disabled=running)
        st.button("Run", key="model_run", type="primary", icon=":material/play_arrow:", on_click=_start,
                  disabled=running, width="stretch", help="Start in the background; the chart updates live.")
        error = st.session_state.get(ERROR)
        if error and st.session_state.get(ERROR + "_for") == (_spec_key(inputs, settings), analysis):
            st.error(error, icon=":material/error:")
        with st.expander("Exact spectrum (dense, small models)", icon=":material/calculate:"):
            n_sel = _operator_size(inputs, settings)
            known = st.session_state.get(EXACT, {}).get(_spec_key(inputs, settings))
            if known is not None:
                st.success(f"Known: {known.size:,} eigenvalues in [{known.min():.4g}, {known.max():.4g}]; runs "
                           "compare against them.", icon=":material/check:")
            elif n_sel is not None and n_sel > DENSE_LIMIT:
                st.caption(f"n = {n_sel:,} is above {DENSE_LIMIT:,}: select fewer parameters for a dense check.")
            else:
                st.caption("Assembles the matrix (torch.func.hessian, float64; about n HVPs) and computes every "
                           "eigenvalue: the live error panel and the density plot then compare with it.")
                st.button("Compute the exact spectrum", key="model_exact", on_click=_compute_exact,
                          args=(inputs, settings), disabled=running, icon=":material/calculate:")
    with right:
        st.markdown(f"**{ANALYSES[analysis]}**: live view")
        if analysis == "slq":
            st.caption("Per probe: the largest and smallest quadrature nodes so far (top left) and their Lanczos "
                       "residual estimates (top right).")
        elif analysis == "trace":
            st.caption("Per probe: the running trace estimate (top left) and its standard error relative to it "
                       "(top right).")
        live.live_panel(KEY, x="n_matvec", stop_key="model_stop", height=520,
                        empty_message="Press **Run**: the solver's progress appears here live.")
    if not running:
        _results(inputs, settings)


def _operator_size(inputs: ModelInputs, settings: dict[str, Any]) -> int | None:
    if inputs.model is None:
        return None
    names = [n for n, _ in inputs.model.named_parameters()]
    try:
        chosen = select_parameters(names, settings["params"])
    except ModelInputError:
        return None
    return sum(p.numel() for n, p in inputs.model.named_parameters() if n in chosen)


def _results(inputs: ModelInputs, settings: dict[str, Any]) -> None:
    last = st.session_state.get(LAST)
    if not last:
        return
    st.subheader("Result")
    st.caption(last.get("description", ""))
    if last["kind"] == "eigen":
        run = get_run(last["run_id"])
        if run is None:
            return
        results.render_run(run, snippet=run.extra.get("snippet"), key="model_result", show_spectrum=True)
        result = run.result
        if result is not None and result.eigenvectors.numel():
            st.markdown("**Where the eigenvectors live**: share ‖v restricted to a layer‖ / ‖v‖ per layer "
                        "(squares sum to 1 per column)")
            table = last["operator"].layer_norms(result.eigenvectors)
            show(layer_share_figure(table, height=120 + 40 * len(table)), key="model_layer_shares")
            with st.expander("Per parameter tensor", icon=":material/table:"):
                st.dataframe(last["operator"].layer_norms(result.eigenvectors, by="parameter"), hide_index=True,
                             key="model_param_shares")
        return
    if last.get("error"):
        st.error(last["error"], icon=":material/error:")
        return
    result = last.get("result")
    if result is None:
        st.warning(f"Stopped before the first probe finished ({last.get('stop_reason')}).")
        return
    if result.status.value == "stopped":
        st.warning(f"Stopped after {result.n_probes} probes; the estimate uses those. {result.message}",
                   icon=":material/stop_circle:")
    exact = st.session_state.get(EXACT, {}).get(last.get("spec"))
    if last["kind"] == "slq":
        low, high = result.support
        c = st.columns(4)
        c[0].metric("smallest node (\u2248 \u03bb_min)", f"{low:.5g}")
        c[1].metric("largest node (\u2248 \u03bb_max)", f"{high:.5g}")
        c[2].metric("trace estimate", f"{result.trace:.5g}",
                    help="n \u00d7 mean over probes of \u03a3 \u03c4\u2096\u03b8\u2096 (the Hutchinson estimate "
                    "from the same probes).")
        c[3].metric("HVPs", f"{result.n_matvec:,}", help=f"{result.n_probes} probes \u00d7 {result.n_steps} steps")
        a, b = st.columns([1, 3])
        ensure("model_slq_width", 1.0)
        ensure("model_slq_log", True)
        a.slider("kernel width (\u00d7 default)", 0.1, 10.0, step=0.1, key="model_slq_width",
                 help=f"Gaussian kernel \u03c3 = width \u00d7 {result.default_sigma():.3g} (1/200 of the range).")
        a.toggle("log density axis", key="model_slq_log")
        figure = density_figure(result, sigma=result.default_sigma() * float(st.session_state["model_slq_width"]),
                                log=bool(st.session_state["model_slq_log"]), eigenvalues=exact, height=380)
        with b:
            show(figure, key="model_density")
        st.download_button("Quadrature nodes and weights (CSV)", data=lambda: result.to_frame().to_csv(index=False),
                           file_name="slq_nodes.csv", mime="text/csv", key="model_slq_csv", on_click="ignore",
                           icon=":material/download:")
    else:
        lo, hi = result.interval(2.0)
        c = st.columns(4)
        c[0].metric("trace estimate", f"{result.trace:.6g}")
        c[1].metric("standard error", f"{result.std_error:.2g}", help="Sample std / sqrt(probes).")
        c[2].metric("\u00b12 s.e. interval", f"[{lo:.4g}, {hi:.4g}]")
        c[3].metric("HVPs", f"{result.n_matvec:,}")
        if exact is not None:
            st.caption(f"Exact trace (dense): {float(np.sum(exact)):.6g}")
        show(trace_figure(result, exact=None if exact is None else float(np.sum(exact))), key="model_trace_chart")
    if last.get("snippet"):
        with st.expander("Reproduce in Python", icon=":material/code:"):
            st.code(last["snippet"], language="python")
