"""Figures and panels of the Compare page, on top of ``explorer.plots.figures``.

The error / residual overlays are ``explorer.plots.compare_figure`` (the app's builder);
this module adds what it lacks: the orthogonality-loss overlay, the plotting of the
Learn page's :class:`explorer.teaching.lesson.Chart` s, and the Streamlit rendering of the
diagnosis findings. The figure builders use plotly only (no Streamlit).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from explorer.analysis.compare import RunOutcome, reference_for
from explorer.plots.figures import (PALETTE, compare_figure, decimate_indices, records_matrix, reference_match,
                                    relative_residuals, ritz_errors)
from explorer.solvers.shift_invert import pass_references

__all__ = ["plot_runs", "overlay_figure", "pairs_figure", "orthogonality_figure", "SEVERITY_ICONS"]

SEVERITY_ICONS = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}


def plot_runs(outcomes: Sequence[RunOutcome], eigenvalues: Any, k: int, which: str) -> list[dict[str, Any]]:
    """The ``runs`` argument of ``explorer.plots.compare_figure`` (label, records, reference, dtype)."""
    runs = []
    for outcome in outcomes:
        reference = reference_for(outcome, eigenvalues, k, which)
        runs.append({"label": outcome.label, "records": outcome.records, "reference": reference,
                     "dtype": outcome.dtype, "match": reference_match(outcome.config.params),
                     "spectrum": eigenvalues})
    return runs


def overlay_figure(outcomes: Sequence[RunOutcome], eigenvalues: Any, k: int, which: str, *, x: str,
                   tol: float | None, height: int = 360) -> go.Figure:
    """Worst-pair error against the reference (or relative residual without one), runs overlaid."""
    metric = "error" if eigenvalues is not None else "residual"
    figure = compare_figure(plot_runs(outcomes, eigenvalues, k, which), metric=metric, x=x, tol=tol, height=height)
    # legend under the plot: with several long run labels it would cover the curves on top
    figure.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0.0), margin=dict(t=20, b=10))
    return figure


def _sampled(outcome: RunOutcome, x: str) -> tuple[list[Any], np.ndarray]:
    """A run's records decimated for drawing (``explorer.plots.decimate_indices``) and their ``x`` values."""
    records = outcome.records
    picked = [records[j] for j in decimate_indices(len(records))]
    return picked, np.asarray([float(getattr(rec, x)) for rec in picked])


def _log_layout(x: str, ytitle: str, height: int) -> go.Layout:
    """White layout with a log y axis and the legend under the plot (long run labels would cover curves)."""
    xlabel = {"iteration": "iteration", "n_matvec": "matvecs", "elapsed_s": "seconds"}.get(x, x)
    return go.Layout(
        height=height, paper_bgcolor="white", plot_bgcolor="white", margin=dict(l=10, r=10, t=20, b=10),
        xaxis=dict(title=xlabel, showgrid=True, gridcolor="#eceff4", automargin=True),
        yaxis=dict(title=ytitle, type="log", exponentformat="power", showgrid=True, gridcolor="#eceff4",
                   automargin=True),
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0.0),
    )


def pairs_figure(outcomes: Sequence[RunOutcome], eigenvalues: Any, k: int, which: str, *, x: str,
                 tol: float | None = None, height: int = 360) -> go.Figure:
    """Every Ritz value's error ``|theta_i - lambda_i|`` (or relative residual without a reference), runs overlaid.

    One color per run (the palette order of the other charts), one thin line per pair.
    """
    traces = []
    hi = 1.0
    for r, outcome in enumerate(outcomes):
        picked, xs = _sampled(outcome, x)
        if not picked:
            continue
        hi = max(hi, float(xs.max()))
        ritz = records_matrix(picked, "ritz_values")
        ref = reference_for(outcome, eigenvalues, k, which)
        match = reference_match(outcome.config.params)
        if ref is not None and match == "nearest":  # shift-invert / slicing: each pass against its own target
            values = ritz_errors(ritz, ref, match, targets=pass_references(picked, eigenvalues))
        elif ref is not None:
            m = min(ref.size, ritz.shape[1])
            values = np.abs(ritz[:, :m] - ref[None, :m])
        else:
            values = relative_residuals(records_matrix(picked, "residual_norms"), ritz, dtype=outcome.dtype)
        color = PALETTE[r % len(PALETTE)]
        for i in range(values.shape[1]):
            ys = values[:, i].copy()
            with np.errstate(invalid="ignore"):
                ys[ys <= 0] = 1e-17
            traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=outcome.label, legendgroup=outcome.label,
                                     showlegend=i == 0, line=dict(color=color, width=1.2),
                                     opacity=max(0.35, 1.0 - 0.12 * i),
                                     hovertemplate=f"pair {i}: %{{y:.2e}}<extra>{outcome.label}</extra>"))
    if tol is not None and eigenvalues is None:
        traces.append(go.Scatter(x=[0, hi], y=[tol, tol], mode="lines", name=f"tol = {tol:.0e}",
                                 line=dict(color="#d62728", dash="dash", width=1)))
    ylabel = "|\u03b8\u1d62 \u2212 \u03bb\u1d62|" if eigenvalues is not None else "relative residual"
    return go.Figure(data=traces, layout=_log_layout(x, ylabel, height))


def orthogonality_figure(outcomes: Sequence[RunOutcome], *, x: str = "n_matvec", height: int = 320,
                         eps: float | None = None) -> go.Figure:
    """``max|V^T V - I|`` of each run's basis against ``x``, with the sqrt(eps) line."""
    traces = []
    hi = 1.0
    for i, outcome in enumerate(outcomes):
        picked, xs = _sampled(outcome, x)
        ys = np.asarray([np.nan if r.orthogonality_loss is None else float(r.orthogonality_loss) for r in picked])
        if xs.size:
            hi = max(hi, float(np.nanmax(xs)))
        label = outcome.label if np.isfinite(ys).any() or not picked else f"{outcome.label} (keeps no basis)"
        with np.errstate(invalid="ignore"):
            ys = np.where(ys > 0, ys, 1e-17)
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=label, line=dict(color=PALETTE[i % len(PALETTE)],
                                 width=2), hovertemplate="%{x:g}: %{y:.2e}<extra>%{fullData.name}</extra>"))
    if eps is not None:
        level = float(np.sqrt(eps))
        traces.append(go.Scatter(x=[0, hi], y=[level, level], mode="lines", name="\u221a\u03b5",
                                 line=dict(color="#888", dash="dot", width=1)))
    return go.Figure(data=traces, layout=_log_layout(x, "max|V\u1d40V \u2212 I|", height))
