"""The "Weights" tab of the Model page: every tensor, and the singular values of a chosen weight.

A 2-D weight (or a conv kernel reshaped to (out, in * k...)) is analysed by
``explorer.models.weights``: top singular values by Lanczos on W^T W (any registry
solver; live records converted to singular values by ``SingularValueTracker``) or by
randomized subspace iteration, in the background under the live key
``"model_weights"``; for matrices up to ``FULL_SPECTRUM_MAX`` the full spectrum and the
empirical spectral density with its Marchenko-Pastur reference are shown right away.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
import torch

from explorer.runs.jobs import JobView, SolveJob, friendly_error
from explorer.models.weights import (
    FULL_SPECTRUM_MAX,
    SingularValueTracker,
    empirical_spectral_density,
    matrix_view,
    natural_key,
    singular_spectrum,
    tensor_table,
    top_singular_values,
    weight_matrix,
)
from explorer.solvers import SOLVERS
from explorer.tracking import Tracker
from explorer.ui import live
from explorer.ui.charts import show
from explorer.plots.models import esd_figure, singular_spectrum_figure
from explorer.ui.model_source import ModelInputs
from explorer.ui.state import ensure, ensure_choice

__all__ = ["KEY", "weights_section"]

KEY = "model_weights"
P = "model_w_"
ERROR = "model_w_error"
LAST = "model_w_last"
INPUTS = "_model_w_inputs"
METHODS = {"lanczos": "Lanczos on W\u1d40W", "randomized": "Randomized SVD (subspace iteration)"}


@st.cache_data(show_spinner=False, max_entries=32)
def _full_spectrum(key: tuple, _matrix: torch.Tensor) -> np.ndarray:
    return singular_spectrum(_matrix).numpy()


@st.cache_data(show_spinner=False, max_entries=32)
def _esd(key: tuple, _matrix: torch.Tensor) -> dict[str, Any]:
    return empirical_spectral_density(_matrix)


def _start() -> None:
    st.session_state[ERROR] = None
    try:
        inputs: ModelInputs = st.session_state[INPUTS]
        name = st.session_state[P + "tensor"]
        W = weight_matrix(inputs.state_dict[name], name)
        k = int(st.session_state[P + "k"])
        method = st.session_state[P + "method"]
        tol = float(st.session_state[P + "tol"])
        seed = int(st.session_state.get(P + "seed", 0) or 0)
        solver_name = "lanczos" if "lanczos" in SOLVERS else next(n for n in SOLVERS if n != "eigh")
        exact = _full_spectrum((inputs.cache_key, name), W) if min(W.shape) <= FULL_SPECTRUM_MAX else None

        def target(tracker: Tracker) -> Any:
            if method == "lanczos":
                return top_singular_values(W, k, method="lanczos", solver=solver_name, tol=tol, seed=seed,
                                           tracker=SingularValueTracker(tracker))
            return top_singular_values(W, k, method="randomized", tol=tol, seed=seed, tracker=tracker)

        def on_finish(job: SolveJob, view: JobView) -> None:
            st.session_state[LAST] = {"name": name, "result": view.result, "error": view.error, "exact": exact,
                                      "shape": tuple(W.shape), "method": method}

        live.start_job(KEY, target, label=f"singular values of {name}",
                       params={"k": k, "method": method, "tol": tol, "seed": seed}, on_finish=on_finish,
                       meta={"reference": None if exact is None else exact[:k], "tol": tol, "dtype": "float64"})
    except Exception as error:  # noqa: BLE001 - shown next to Run
        st.session_state[ERROR] = friendly_error(error)


def weights_section(inputs: ModelInputs) -> None:
    """The whole tab."""
    st.session_state[INPUTS] = inputs
    running = live.is_running(KEY)
    if "state_dict" in inputs.errors:
        st.error(f"**State dict:** {inputs.errors['state_dict']}", icon=":material/error:")
    if not inputs.state_dict:
        st.info("Choose a sample, or upload a state dict (.safetensors, or .pt read with weights_only=True) or an "
                "exported model.", icon=":material/upload_file:")
        return
    table = tensor_table(inputs.state_dict)
    st.markdown(f"**{len(table)} tensors**, {int(table['numel'].sum()):,} numbers")
    st.dataframe(table, hide_index=True, key="model_w_table")
    candidates = sorted((n for n, t in inputs.state_dict.items() if matrix_view(tuple(t.shape)) is not None
                         and t.is_floating_point()), key=natural_key)
    if not candidates:
        st.warning("No 2-D weight or conv kernel in this state dict: nothing has singular values.")
        return
    ensure_choice(P + "tensor", candidates)
    ensure(P + "method", "lanczos")
    ensure(P + "tol", 1e-8)
    ensure(P + "seed", 0)
    c1, c2, c3, c4, c5 = st.columns([3, 3, 1, 1, 1])
    c1.selectbox("Weight", candidates, key=P + "tensor", disabled=running,
                 format_func=lambda n: f"{n}  ({'x'.join(map(str, inputs.state_dict[n].shape))})")
    name = st.session_state[P + "tensor"]
    rows, cols = matrix_view(tuple(inputs.state_dict[name].shape))  # type: ignore[misc]
    small = min(rows, cols)
    if int(ensure(P + "k", min(5, small)) or 0) not in range(1, small + 1):
        st.session_state[P + "k"] = min(5, small)
    c2.radio("Method", list(METHODS), key=P + "method", format_func=METHODS.get, disabled=running,
             help="Lanczos (the registry's) on the Gram matrix W^T W, whose eigenvalues are sigma^2; or randomized "
             "subspace iteration on W (Halko, Martinsson & Tropp 2011).")
    c3.number_input("k", 1, small, step=1, key=P + "k", disabled=running)
    c4.number_input("tol", 1e-14, 1e-1, format="%.0e", key=P + "tol", disabled=running)
    c5.number_input("seed", 0, step=1, key=P + "seed", disabled=running)
    if len(inputs.state_dict[name].shape) > 2:
        st.caption(f"Conv kernel {tuple(inputs.state_dict[name].shape)} analysed as the {rows} x {cols} matrix "
                   "(out channels x in channels \u00b7 kernel size).")
    st.button("Run", key="model_w_run", type="primary", icon=":material/play_arrow:", on_click=_start,
              disabled=running, help="Top-k singular values, live.")
    if st.session_state.get(ERROR):
        st.error(st.session_state[ERROR], icon=":material/error:")
    try:
        W = weight_matrix(inputs.state_dict[name], name)
    except Exception as error:  # noqa: BLE001
        st.error(friendly_error(error))
        return
    live.live_panel(KEY, x="n_matvec", stop_key="model_w_stop", height=480,
                    empty_message="Press **Run** for the top singular values (they appear here live).")
    last = st.session_state.get(LAST)
    full = _full_spectrum((inputs.cache_key, name), W) if small <= FULL_SPECTRUM_MAX else None
    if last and not running and last["name"] == name:
        if last.get("error"):
            st.error(last["error"], icon=":material/error:")
        elif last.get("result") is not None:
            res = last["result"]
            status = res.status.value
            text = (f"**{METHODS[last['method']]} ({res.solver}): {status}** after {res.n_iter} iterations, {res.n_matvec:,} "
                    f"products with W or W\u1d40, {res.elapsed_s:.2f} s. {res.message}")
            (st.success if res.status.ok else st.warning)(text)
            frame = {"\u03c3 (computed)": res.values.cpu().numpy(), "residual": res.residuals.cpu().numpy(),
                     "converged": res.converged.cpu().numpy()}
            if last.get("exact") is not None:
                ex = last["exact"][: res.k]
                frame["\u03c3 (LAPACK)"] = ex
                frame["|error|"] = np.abs(res.values.cpu().numpy() - ex)
            import pandas as pd

            table = pd.DataFrame(frame)
            formats = {c: "{:.3e}" for c in ("residual", "|error|") if c in table.columns}
            formats.update({c: "{:.12g}" for c in ("\u03c3 (computed)", "\u03c3 (LAPACK)") if c in table.columns})
            st.dataframe(table.style.format(formats), key="model_w_result_table")
    if full is not None:
        a, b = st.columns(2)
        top = None
        if last and last["name"] == name and last.get("result") is not None:
            top = last["result"].values.cpu().numpy()
        with a:
            st.markdown(f"**Singular values of `{name}`** ({rows} x {cols}, all of them by LAPACK)")
            show(singular_spectrum_figure(full, top), key="model_w_spectrum")
        with b:
            st.markdown("**Empirical spectral density** of WᵀW / N against a random matrix's")
            show(esd_figure(_esd((inputs.cache_key, name), W)), key="model_w_esd")
    else:
        st.caption(f"{rows} x {cols}: too large for the full spectrum (limit min(m, n) <= {FULL_SPECTRUM_MAX}).")
