"""Figures of the Model page: spectral density, trace samples, layer shares, singular spectra.

Pure builders (plotly + numpy, no Streamlit), like ``explorer.plots.figures``; they take the
core's result objects (``SpectralDensity``, ``TraceEstimate``, data frames) and return a
``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from explorer.plots.figures import PALETTE

__all__ = ["density_figure", "trace_figure", "layer_share_figure", "singular_spectrum_figure", "esd_figure"]


def _layout(height: int, title: str | None, **axes: Any) -> go.Layout:
    return go.Layout(height=height, margin=dict(l=10, r=10, t=50 if title else 20, b=10),
                     title=dict(text=title, x=0.0, font=dict(size=14)) if title else None,
                     legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0.0), hovermode="closest", **axes)


def density_figure(density: Any, *, sigma: float | None = None, log: bool = True, eigenvalues: Any = None,
                   height: int = 380, title: str | None = None) -> go.Figure:
    """SLQ density (Gaussian-smoothed) with the quadrature nodes as a rug; optional exact eigenvalues.

    Args:
        density: an ``explorer.models.analysis.SpectralDensity``.
        sigma: kernel width (default: the result's own default).
        log: log-scale density axis (outliers next to a bulk near zero are only visible so).
        eigenvalues: optional exact eigenvalues (small models): their histogram is overlaid.
    """
    grid, values = density.density(sigma=sigma)
    x, y = grid.numpy(), values.numpy()
    floor = max(float(y.max()) * 1e-8, 1e-300) if y.size else 1e-300
    traces = [go.Scatter(x=x, y=np.maximum(y, floor) if log else y, mode="lines", name="SLQ density",
                         line=dict(color=PALETTE[0], width=2), hovertemplate="t = %{x:.4g}<br>density %{y:.3e}"
                         "<extra></extra>")]
    nodes = density.nodes[np.isfinite(density.nodes.numpy())].numpy()
    if eigenvalues is not None:
        ev = np.asarray(eigenvalues, dtype=float).ravel()
        hist, edges = np.histogram(ev, bins=min(200, max(20, ev.size // 10)), density=True)
        traces.append(go.Bar(x=0.5 * (edges[1:] + edges[:-1]), y=np.maximum(hist, floor) if log else hist,
                             width=edges[1:] - edges[:-1], name="exact eigenvalues (histogram)",
                             marker=dict(color="rgba(0,0,0,0.18)"), hovertemplate="%{y:.3e}<extra></extra>"))
    layout = _layout(height, title,
                     xaxis=dict(title="eigenvalue", showgrid=True, gridcolor="#eceff4", zeroline=True,
                                zerolinecolor="#c9ced6"),
                     yaxis=dict(title="density" + (" (log)" if log else ""), type="log" if log else "linear",
                                exponentformat="power", showgrid=True, gridcolor="#eceff4"),
                     shapes=[dict(type="line", x0=float(v), x1=float(v), y0=0, y1=0.04, yref="paper",
                                  line=dict(color="rgba(214,39,40,0.5)", width=1)) for v in nodes[:2000]])
    return go.Figure(data=traces, layout=layout)


def trace_figure(estimate: Any, *, exact: float | None = None, height: int = 320,
                 title: str | None = None) -> go.Figure:
    """Running Hutchinson estimate with a +-2 standard error band; the exact trace when known."""
    samples = estimate.samples.numpy()
    count = np.arange(1, samples.size + 1)
    mean = np.cumsum(samples) / count
    var = np.array([samples[:i].var(ddof=1) if i > 1 else np.nan for i in count])
    se = np.sqrt(var / count)
    traces = [
        go.Scatter(x=np.concatenate([count, count[::-1]]), y=np.concatenate([mean + 2 * se, (mean - 2 * se)[::-1]]),
                   fill="toself", fillcolor="rgba(31,119,180,0.15)", line=dict(width=0), name="\u00b12 std. error",
                   hoverinfo="skip"),
        go.Scatter(x=count, y=mean, mode="lines", name="running estimate", line=dict(color=PALETTE[0], width=2),
                   hovertemplate="%{x} probes: %{y:.6g}<extra></extra>"),
        go.Scatter(x=count, y=samples, mode="markers", name="z\u1d40Hz per probe",
                   marker=dict(color="rgba(0,0,0,0.3)", size=4), hovertemplate="%{y:.4g}<extra></extra>"),
    ]
    if exact is not None:
        traces.append(go.Scatter(x=[1, max(2, samples.size)], y=[exact, exact], mode="lines", name="exact trace",
                                 line=dict(color="#d62728", dash="dash")))
    layout = _layout(height, title, xaxis=dict(title="probes", showgrid=True, gridcolor="#eceff4"),
                     yaxis=dict(title="trace estimate", showgrid=True, gridcolor="#eceff4"))
    return go.Figure(data=traces, layout=layout)


def layer_share_figure(table: Any, *, key: str = "layer", height: int = 300, title: str | None = None) -> go.Figure:
    """Heatmap: share ||v restricted to the layer|| / ||v|| of each eigenvector (columns v1..vk) per layer."""
    columns = [c for c in table.columns if str(c).startswith("v") and str(c)[1:].isdigit()]
    z = table[columns].to_numpy(dtype=float)
    rows = [str(r) for r in table[key]]
    heat = go.Heatmap(z=z, x=columns, y=rows, colorscale="Blues", zmin=0, zmax=1,
                      text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
                      hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>", colorbar=dict(title="share"))
    layout = _layout(height, title, xaxis=dict(title="eigenvector", side="bottom"),
                     yaxis=dict(title=key, autorange="reversed"))
    return go.Figure(data=[heat], layout=layout)


def singular_spectrum_figure(full: Any = None, top: Any = None, *, height: int = 320,
                             title: str | None = None) -> go.Figure:
    """All singular values (when computed) by index on a log axis, with the solver's top-k as markers."""
    traces = []
    if full is not None:
        s = np.asarray(full, dtype=float).ravel()
        traces.append(go.Scatter(x=np.arange(1, s.size + 1), y=s, mode="lines+markers", name="all (LAPACK)",
                                 marker=dict(size=4, color="rgba(0,0,0,0.45)"), line=dict(color="rgba(0,0,0,0.3)"),
                                 hovertemplate="\u03c3%{x} = %{y:.6g}<extra></extra>"))
    if top is not None:
        t = np.asarray(top, dtype=float).ravel()
        traces.append(go.Scatter(x=np.arange(1, t.size + 1), y=t, mode="markers", name="computed top-k",
                                 marker=dict(size=10, color="#d62728", symbol="circle-open", line=dict(width=2)),
                                 hovertemplate="\u03c3%{x} = %{y:.10g}<extra></extra>"))
    layout = _layout(height, title, xaxis=dict(title="index i", showgrid=True, gridcolor="#eceff4"),
                     yaxis=dict(title="singular value \u03c3\u1d62", type="log", exponentformat="power",
                                showgrid=True, gridcolor="#eceff4"))
    return go.Figure(data=traces, layout=layout)


def esd_figure(esd: dict[str, Any], *, height: int = 320, title: str | None = None) -> go.Figure:
    """Histogram of the eigenvalues of W^T W / N with the Marchenko-Pastur law of a random matrix."""
    edges = esd["edges"].numpy()
    traces: Sequence[Any] = [
        go.Bar(x=0.5 * (edges[1:] + edges[:-1]), y=esd["density"].numpy(), width=edges[1:] - edges[:-1],
               name="empirical spectral density", marker=dict(color="rgba(31,119,180,0.6)"),
               hovertemplate="%{x:.4g}: %{y:.3g}<extra></extra>"),
        go.Scatter(x=esd["mp_x"].numpy(), y=esd["mp_density"].numpy(), mode="lines",
                   name=f"Marchenko-Pastur (q = {esd['ratio']:.2f}, same entry variance)",
                   line=dict(color="#d62728", width=2)),
    ]
    layout = _layout(height, title, xaxis=dict(title="eigenvalue of W\u1d40W / N", showgrid=True,
                                               gridcolor="#eceff4"),
                     yaxis=dict(title="density", showgrid=True, gridcolor="#eceff4"),
                     shapes=[dict(type="line", x0=esd["mp_edge"], x1=esd["mp_edge"], y0=0, y1=1, yref="paper",
                                  line=dict(color="#d62728", dash="dot", width=1))])
    return go.Figure(data=list(traces), layout=layout)
