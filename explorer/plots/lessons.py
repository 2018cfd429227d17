"""Plotly figures for the Learn page's lesson charts (``explorer.teaching.lesson.Chart``).

Measured series are solid lines or dots, theory dashed, reference lines faint; a run
keeps its palette color (``explorer.plots.PALETTE``) across charts, so the dashed bound
of a run has that run's color. Points flagged in ``Series.highlight`` (ghost Ritz
values) are drawn in red on top.
"""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go

from explorer.teaching.lesson import Chart, Series
from explorer.plots.figures import PALETTE

__all__ = ["chart_figure", "pretty"]

_GHOST = "#d62728"
_GREEK = (("lambda", "\u03bb"), ("theta", "\u03b8"), ("sigma", "\u03c3"), ("kappa", "\u03ba"),
          ("gamma", "\u03b3"), ("Delta", "\u0394"), ("beta", "\u03b2"), ("||A||", "\u2016A\u2016"))
_SUB = str.maketrans("0123456789+-", "\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089\u208a\u208b")


def pretty(text: str) -> str:
    """ASCII math of the lesson module for display: ``lambda_1`` -> λ₁, ``theta`` -> θ, ``||A||`` -> ‖A‖."""
    for word, symbol in _GREEK:
        text = text.replace(word, symbol)
    return re.sub(r"_\(?([0-9+\-]{1,3})\)?", lambda m: m.group(1).translate(_SUB), text)


def _color(series: Series) -> str:
    if series.role == "reference":
        return "rgba(0,0,0,0.35)"
    return PALETTE[(series.color or 0) % len(PALETTE)]


def _traces(series: Series) -> list[go.Scatter]:
    x = np.asarray(series.x, dtype=float)
    y = np.asarray(series.y, dtype=float)
    color = _color(series)
    show = bool(series.name)
    name = pretty(series.name)
    if series.mode == "markers":
        marker = dict(color=color, size=4 if x.size > 500 else 7, opacity=0.7 if x.size > 500 else 0.95)
        out = []
        highlight = None if series.highlight is None else np.asarray(series.highlight, dtype=bool)
        if highlight is not None and highlight.any():
            out.append(go.Scattergl(x=x[~highlight], y=y[~highlight], mode="markers", name=name,
                                    marker=marker, showlegend=show))
            out.append(go.Scattergl(x=x[highlight], y=y[highlight], mode="markers", name="ghost copies",
                                    marker=dict(color=_GHOST, size=7, symbol="x")))
        else:
            out.append(go.Scattergl(x=x, y=y, mode="markers", name=name, marker=marker, showlegend=show))
        return out
    dash = {"theory": "dash", "reference": "dot"}.get(series.role)
    width = {"theory": 1.8, "reference": 1.0}.get(series.role, 2.2)
    return [go.Scatter(x=x, y=y, mode=series.mode, name=name, showlegend=show,
                       line=dict(color=color, dash=dash, width=width),
                       hovertemplate="%{x:g}: %{y:.3e}<extra>%{fullData.name}</extra>")]


def chart_figure(chart: Chart, *, height: int = 380) -> go.Figure:
    """A plotly figure for one lesson chart."""
    traces: list[go.Scatter] = []
    for series in chart.series:
        traces.extend(_traces(series))
    axis = dict(showgrid=True, gridcolor="#eceff4", automargin=True, zeroline=False)
    layout = go.Layout(
        height=height, paper_bgcolor="white", plot_bgcolor="white", margin=dict(l=10, r=10, t=50, b=10),
        title=dict(text=pretty(chart.title), x=0.0, font=dict(size=14)),
        xaxis=dict(title=pretty(chart.x_label), type="log" if chart.log_x else "linear", **axis),
        yaxis=dict(title=pretty(chart.y_label), type="log" if chart.log_y else "linear",
                   exponentformat="power" if chart.log_y else None, **axis),
        legend=dict(orientation="h", yanchor="top", y=-0.3, x=0.0, font=dict(size=11)),
    )
    return go.Figure(data=traces, layout=layout)
