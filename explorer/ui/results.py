"""After a run: status, metrics, eigenpair table, spectrum plot, downloads and the reproduce snippet.

``render_run(run, spectrum=..., snippet=...)`` draws one ``explorer.runs.RunRecord``;
the Explore page shows the latest run with it and the History page any run.
``key`` prefixes every widget key, so several runs can be drawn on one page.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import streamlit as st
import torch

from explorer.plots.figures import spectrum_figure
from explorer.runs.record import RunRecord, history_csv, history_json
from explorer.tracking.results import SingularResult

__all__ = ["render_status", "render_run", "eigen_table"]

_ICONS = {"converged": ":material/check_circle:", "max_iter reached": ":material/hourglass_bottom:",
          "stopped": ":material/stop_circle:", "breakdown": ":material/warning:", "failed": ":material/error:",
          "interrupted": ":material/link_off:", "running": ":material/sensors:"}


def render_status(run: RunRecord) -> None:
    """st.success / st.warning / st.error with the status and the core's message."""
    text = f"**Run #{run.run_id} ({run.solver}): {run.status}.** {run.message}"
    if run.page not in ("explore", "compare", "model", "learn"):
        text += f" *(from {run.page})*"
    icon = _ICONS.get(run.status)
    if run.status == "converged":
        st.success(text, icon=icon)
    elif run.status in ("failed", "interrupted"):
        st.error(text, icon=icon)
    else:
        st.warning(text, icon=icon)


def _is_svd(run: RunRecord) -> bool:
    return isinstance(run.result, SingularResult)


def eigen_table(run: RunRecord) -> Any:
    """EigenResult.to_frame(reference) with readable column names (None without a result); singular
    triplets (a SingularResult) get their own names."""
    if run.result is None:
        return None
    reference = None if run.reference is None else torch.as_tensor(run.reference, dtype=torch.float64)
    frame = run.result.to_frame(reference)
    if _is_svd(run):
        return frame.rename(columns={
            "singular_value": "singular value \u03c3", "residual_norm": "residual \u2016(Av\u2212\u03c3u, "
            "A\u1d40u\u2212\u03c3v)\u2016", "reference": "exact \u03c3", "abs_error": "error |\u03c3\u2212\u03c3*|",
            "rel_error": "relative error"}).set_index("index")
    frame = frame.rename(columns={"eigenvalue": "eigenvalue \u03b8", "residual_norm": "residual \u2016Ax\u2212\u03b8x\u2016",
                                  "reference": "exact \u03bb", "abs_error": "error |\u03b8\u2212\u03bb|",
                                  "rel_error": "relative error"})
    return frame.set_index("index")


def _npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
                        for name, value in arrays.items()})
    return buffer.getvalue()


def render_run(run: RunRecord, *, spectrum: Any = None, snippet: str | None = None, key: str = "result",
               show_spectrum: bool = True) -> None:
    """Status, metrics, eigenpair table, final values vs the exact spectrum, downloads, snippet."""
    render_status(run)
    result = run.result
    svd = _is_svd(run)
    values = "singular values" if svd else "eigenvalues"
    cols = st.columns(5)
    cols[0].metric("iterations", f"{run.n_iter:,}")
    cols[1].metric("matvecs", f"{run.n_matvec:,}", help="Products with A (and with A\u1d40 for an SVD solver: "
                   "each counts as one)." if svd else None)
    cols[2].metric("time", f"{run.elapsed_s:.2f} s")
    cols[3].metric("converged", "\u2013" if result is None else f"{result.n_converged} / {result.k}")
    error_label = "max error |\u03c3\u2212\u03c3*|" if svd else "max error |\u03b8\u2212\u03bb|"
    cols[4].metric(error_label, "unknown" if run.max_error is None else f"{run.max_error:.1e}",
                   help=(f"Against the exact {values} (known, or a dense "
                         + ("SVD); unknown when the matrix is too large." if svd
                            else "eigh); unknown when n is too large.")))
    table = eigen_table(run)
    if table is not None and len(table):
        if svd:
            st.markdown("**Singular triplets** (in `which` order; error against the exact singular values where "
                        "known)")
        else:
            st.markdown("**Eigenpairs** (in `which` order; error against the exact eigenvalues where known)")
        formats = {c: "{:.3e}" for c in table.columns if c not in ("converged",)}
        formats[table.columns[0]] = "{:.12g}"
        for exact in ("exact \u03bb", "exact \u03c3"):
            if exact in table.columns:
                formats[exact] = "{:.12g}"
        st.dataframe(table.style.format(formats, na_rep="\u2013"), key=f"{key}_table")
        if show_spectrum:
            st.markdown(f"**Computed {values} against the exact ones** (drag to zoom)" if svd else
                        "**Computed eigenvalues against the exact spectrum** (drag to zoom)")
            st.plotly_chart(spectrum_figure(result.eigenvalues, spectrum, converged=result.converged, title=None,
                                            height=220), key=f"{key}_spectrum", config={"displaylogo": False})
    meta = {"run": run.run_id, "solver": run.solver, "problem": run.problem, "n": run.n, "status": run.status,
            **{k: v for k, v in run.params.items()}}
    base = f"run{run.run_id}_{run.solver}"
    st.markdown("**Downloads**")
    d = st.columns(4)
    d[0].download_button("History (CSV)", data=lambda: history_csv(run.records), file_name=f"{base}_history.csv",
                         mime="text/csv", key=f"{key}_dl_csv", on_click="ignore", icon=":material/download:",
                         help="One row per (iteration, Ritz pair): ritz_value, residual_norm, orthogonality_loss, "
                         "n_matvec, elapsed_s, ...", disabled=not run.records)
    d[1].download_button("History (JSON)", data=lambda: history_json(run.records, meta=meta),
                         file_name=f"{base}_history.json", mime="application/json", key=f"{key}_dl_json",
                         on_click="ignore", icon=":material/download:", disabled=not run.records)
    has_result = result is not None and result.eigenvalues.numel() > 0
    d[2].download_button("Singular values (.npy)" if svd else "Eigenvalues (.npy)",
                         data=(lambda: _npy(result.eigenvalues.detach().cpu().numpy())) if has_result else b"",
                         file_name=f"{base}_{'singular_values' if svd else 'eigenvalues'}.npy",
                         mime="application/octet-stream",
                         key=f"{key}_dl_values", on_click="ignore", icon=":material/download:", disabled=not has_result)
    if svd:
        has_vectors = has_result and getattr(result, "U", None) is not None
        d[3].download_button("U and V (.npz)", data=(lambda: _npz(U=result.U, V=result.V)) if has_vectors else b"",
                             file_name=f"{base}_singular_vectors.npz", mime="application/octet-stream",
                             key=f"{key}_dl_vectors", on_click="ignore", icon=":material/download:",
                             disabled=not has_vectors, help="np.load(...)['U'] (m x k) and ['V'] (n x k): "
                             "A v_i = sigma_i u_i, one triplet per column.")
    else:
        has_vectors = has_result and getattr(result, "eigenvectors", None) is not None
        d[3].download_button("Eigenvectors (.npy)",
                             data=(lambda: _npy(result.eigenvectors.detach().cpu().numpy())) if has_vectors else b"",
                             file_name=f"{base}_eigenvectors.npy", mime="application/octet-stream",
                             key=f"{key}_dl_vectors", on_click="ignore", icon=":material/download:",
                             disabled=not has_vectors,
                             help="n x k array, one eigenvector per column." if has_vectors or not has_result else
                             "The run store keeps eigenvalues and residuals, not eigenvectors (n x k).")
    if snippet:
        with st.expander("Reproduce this solve in Python", icon=":material/code:"):
            st.code(snippet, language="python")
