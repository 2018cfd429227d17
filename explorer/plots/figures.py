"""Plotly figure builders for convergence histories, spectra and matrix previews.

Pure functions (plotly + numpy only, no Streamlit): every page of the app and any
notebook can reuse them. Each builder takes plain data (``IterationRecord`` lists,
numpy arrays) and returns a ``plotly.graph_objects.Figure``; nothing is drawn here.

Entry points other pages use:

* :func:`live_figure` - the 2 x 2 live convergence panel (Ritz values with exact
  eigenvalues as reference lines, relative residuals with the tolerance line, error
  against the reference, orthogonality loss). Built with explicit axis domains (not
  ``make_subplots``, ~2x cheaper, ../shared/LIVE.md 3) and decimated to
  <= ``max_points`` points per trace, so it is cheap enough to redraw twice a second.
* :func:`spectrum_figure` - final Ritz values against the reference spectrum.
* :func:`compare_figure` / :func:`convergence_curve` - several runs overlaid
  (error or residual against matvecs, iterations or seconds).
* :func:`matrix_figure` - a block-aggregated ``|A|`` heatmap (see
  ``explorer.problems.preview.block_abs``).
* :func:`wanted_reference` - the k exact eigenvalues a solve should find, in the
  solver's ``which`` order (so index i of a record compares with index i here).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from explorer.tracking.records import IterationRecord

__all__ = [
    "MAX_POINTS",
    "PALETTE",
    "decimate_indices",
    "records_matrix",
    "wanted_reference",
    "relative_residuals",
    "reference_match",
    "ritz_errors",
    "live_figure",
    "spectrum_figure",
    "convergence_curve",
    "compare_figure",
    "matrix_figure",
]

MAX_POINTS = 400
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
_EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}


# -- data helpers --------------------------------------------------------------------
def decimate_indices(count: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread items of ``count``, first and last kept."""
    if count <= max_points:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max_points).round().astype(np.int64))


def records_matrix(records: Sequence[IterationRecord], field: str = "ritz_values") -> np.ndarray:
    """(len(records), k) float array of a per-pair field; NaN pads records with fewer pairs."""
    if not records:
        return np.zeros((0, 0))
    rows = [np.asarray(getattr(r, field).detach().cpu().double().numpy(), dtype=float).ravel() for r in records]
    width = max((len(row) for row in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def wanted_reference(eigenvalues: Any, k: int, which: str, *, sigma: float | None = None,
                     lower: float | None = None, upper: float | None = None) -> np.ndarray | None:
    """The ``k`` exact eigenvalues a solve with ``which`` converges to, in the solver's order.

    ``eigenvalues``: every eigenvalue (any order; array or tensor), or None.
    LA: descending; SA: ascending; LM: by descending magnitude; BE: largest, smallest,
    second largest, ... (the order of ``explorer.solvers._common.select_order``).
    With ``sigma`` (shift-invert): the k nearest sigma in the solver's order (``which`` LM / LA / SA:
    nearest, nearest above, nearest below); with ``lower`` and ``upper`` (spectrum slicing): every
    eigenvalue in [lower, upper), ascending, whatever k is
    (``explorer.solvers.shift_invert.spectral_reference``).
    """
    if eigenvalues is None:
        return None
    if sigma is not None or (lower is not None and upper is not None):
        from explorer.solvers.shift_invert import spectral_reference

        return spectral_reference(eigenvalues, k, which=which, sigma=sigma, lower=lower, upper=upper)
    values = np.sort(np.asarray(getattr(eigenvalues, "numpy", lambda: eigenvalues)(), dtype=float).ravel())
    if values.size == 0:
        return None
    k = max(0, min(int(k), values.size))
    which = str(which).upper()
    if which == "LA":
        order = values[::-1]
    elif which == "SA":
        order = values
    elif which == "LM":
        order = values[np.argsort(-np.abs(values), kind="stable")]
    elif which == "BE":
        picked, lo, hi = [], 0, values.size - 1
        while lo <= hi and len(picked) < k:
            picked.append(values[hi]); hi -= 1
            if lo <= hi and len(picked) < k:
                picked.append(values[lo]); lo += 1
        order = np.asarray(picked)
    else:
        raise ValueError(f"unknown `which` {which!r}; use LA, SA, LM or BE")
    return np.asarray(order[:k], dtype=float)


def relative_residuals(residuals: np.ndarray, ritz: np.ndarray, *, norm_estimate: float | None = None,
                       dtype: str = "float64") -> np.ndarray:
    """``||r_i|| / max(|theta_i|, sqrt(eps) ||A||)``: the quantity the solvers compare with ``tol``.

    Same scaling as ``explorer.solvers._common.residual_threshold``; ``norm_estimate``
    defaults to the largest |theta| seen.
    """
    ritz = np.abs(np.asarray(ritz, dtype=float))
    if norm_estimate is None:
        finite = ritz[np.isfinite(ritz)]
        norm_estimate = float(finite.max()) if finite.size else 1.0
    floor = math.sqrt(_EPS.get(dtype, _EPS["float64"])) * max(norm_estimate, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(residuals, dtype=float) / np.maximum(ritz, floor)


def reference_match(params: Mapping[str, Any] | None) -> str:
    """How a run's Ritz values pair with its reference (:func:`wanted_reference`): "index" (value i
    with reference i: the solvers' order) or, for a shift-invert or spectrum-slicing run (``sigma``,
    ``lower`` / ``upper`` among ``params``), "nearest" (each value with the nearest wanted eigenvalue:
    their records come from one or several shifts, the order of a record need not be the result's)."""
    from explorer.solvers.shift_invert import is_spectral

    return "nearest" if params is not None and is_spectral(params) else "index"


def ritz_errors(ritz: np.ndarray, reference: Any, match: str = "index",
                targets: Sequence[Any] | None = None) -> np.ndarray:
    """(T, k) ``|theta_i - lambda_i|`` of a :func:`records_matrix` against ``reference``: by index (NaN
    past the reference's length) or, ``match="nearest"``, against the nearest reference value.

    ``targets`` (with "nearest"): one array per row, what that record's pass converges to
    (``explorer.solvers.shift_invert.pass_references``), used instead of ``reference`` where not None:
    a shift-invert or slicing solve in passes (LOBPCG above then below sigma, one solve per shift)
    records each pass's own Ritz values, most of which are not in the final result."""
    ritz = np.asarray(ritz, dtype=float)
    out = np.full(ritz.shape, np.nan)
    ref = np.asarray(reference, dtype=float).ravel() if reference is not None else np.zeros(0)
    if (ref.size == 0 and targets is None) or ritz.size == 0:
        return out
    with np.errstate(invalid="ignore"):
        if match == "nearest" and targets is not None:
            for t, target in enumerate(targets):
                row = ref if target is None else np.asarray(target, dtype=float).ravel()
                if row.size:
                    out[t] = np.min(np.abs(ritz[t][:, None] - row[None, :]), axis=1)
        elif match == "nearest":
            out = np.min(np.abs(ritz[:, :, None] - ref[None, None, :]), axis=2)
        elif match == "index":
            m = min(ref.size, ritz.shape[1])
            out[:, :m] = np.abs(ritz[:, :m] - ref[None, :m])
        else:
            raise ValueError(f"unknown match {match!r}; use 'index' or 'nearest'")
    return out


def _positive(values: np.ndarray, floor: float = 1e-17) -> np.ndarray:
    """Values for a log axis: non-positive become ``floor`` (exact zero residual), NaN stays NaN."""
    out = np.asarray(values, dtype=float).copy()
    with np.errstate(invalid="ignore"):
        out[out <= 0] = floor
    return out


def _hline_trace(values: Iterable[float], x0: float, x1: float, *, name: str, xaxis: str, yaxis: str,
                 color: str = "rgba(0,0,0,0.45)", dash: str = "dash", showlegend: bool = True,
                 hover: str = "exact %{y:.10g}") -> go.Scatter:
    """Many horizontal lines as one trace (None-separated), cheaper than shapes."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for value in values:
        xs += [x0, x1, None]
        ys += [float(value), float(value), None]
    return go.Scatter(x=xs, y=ys, mode="lines", name=name, line=dict(color=color, width=1, dash=dash),
                      xaxis=xaxis, yaxis=yaxis, hovertemplate=hover + "<extra></extra>", showlegend=showlegend,
                      legendgroup=name)


def _axis(title: str, domain: tuple[float, float], anchor: str, *, log: bool = False, **extra: Any) -> dict:
    axis = dict(title=dict(text=title, font=dict(size=12)), domain=list(domain), anchor=anchor,
                showgrid=True, gridcolor="#eceff4", zeroline=False, linecolor="#c9ced6", mirror=True,
                ticks="outside", automargin=True)
    if log:
        axis.update(type="log", exponentformat="power")
    axis.update(extra)
    return axis


# -- the live panel ------------------------------------------------------------------
def live_figure(records: Sequence[IterationRecord], *, reference: Any = None, tol: float | None = None,
                spectrum: Any = None, x: str = "iteration", dtype: str = "float64",
                norm_estimate: float | None = None, max_points: int = MAX_POINTS, height: int = 640,
                title: str | None = None, match: str = "index") -> go.Figure:
    """Convergence of one solve in four panels, from its iteration records.

    Args:
        records: the solve's ``IterationRecord`` list so far (any length; decimated).
        reference: the k wanted exact eigenvalues in ``which`` order (see
            :func:`wanted_reference`), or None when unknown. Drawn as dashed horizontal
            lines in the Ritz panel; enables the error panel ``|theta_i - lambda_i|``.
        tol: the solve's tolerance, drawn as a line on the relative-residual panel.
        spectrum: optional every exact eigenvalue; the ones nearest the wanted ones (up to
            max(4, k)) are drawn as faint dotted lines in the Ritz panel. With ``match="nearest"``
            the error panel judges each record of a shift-invert run in passes against its pass's
            own target (:func:`ritz_errors`).
        x: "iteration", "n_matvec" or "elapsed_s" for the horizontal axes.
        dtype: the solve's dtype (sets the sqrt(eps) floor of the relative residual).
        norm_estimate: ||A|| estimate for that floor (default: largest |theta| seen).
        match: how Ritz values pair with ``reference`` in the error panel (:func:`ritz_errors`):
            "index", or "nearest" for shift-invert and spectrum-slicing runs (:func:`reference_match`).

    Panels: Ritz values (top left), relative residual ``||A x - theta x|| / |theta|``
    on a log axis with ``tol`` (top right), error against the reference on a log
    axis, or the converged count when no reference is known (bottom left), and the
    orthogonality loss ``max |V^T V - I|`` on a log axis (bottom right). A filter solver's cut
    (:func:`filter_cut`), or the pass band of a band-pass filter, is drawn in the Ritz panel.
    """
    idx = decimate_indices(len(records), max_points)
    picked = [records[i] for i in idx]
    xs = np.asarray([float(getattr(r, x)) for r in picked])
    ritz = records_matrix(picked, "ritz_values")
    res = records_matrix(picked, "residual_norms")
    k = ritz.shape[1] if ritz.size else 0
    if norm_estimate is None and ritz.size and np.isfinite(ritz).any():
        norm_estimate = float(np.nanmax(np.abs(ritz)))
    rel = relative_residuals(res, ritz, norm_estimate=norm_estimate, dtype=dtype) if k else res
    ref = None if reference is None else np.asarray(reference, dtype=float).ravel()
    errors = ritz_errors(ritz, ref, match, targets=_targets(picked, spectrum, match)) if ref is not None else None
    estimated = bool(picked and picked[-1].residuals_estimated)
    x0, x1 = (float(xs[0]), float(xs[-1])) if xs.size else (0.0, 1.0)
    if x1 <= x0:
        x1 = x0 + 1.0

    traces: list[go.Scatter] = []
    if spectrum is not None and ref is not None and ref.size:
        # The nearest other eigenvalues (what a Ritz value might settle on instead): up to max(4, k).
        extra = np.asarray(spectrum, dtype=float).ravel()
        extra = extra[~np.isin(extra, ref)]
        if extra.size:
            distance = np.min(np.abs(extra[:, None] - ref[None, :]), axis=1)
            near = extra[np.argsort(distance, kind="stable")[: max(4, ref.size)]]
            traces.append(_hline_trace(near, x0, x1, name="nearby eigenvalues", xaxis="x", yaxis="y",
                                       color="rgba(0,0,0,0.2)", dash="dot"))
    if ref is not None and ref.size:
        traces.append(_hline_trace(ref, x0, x1, name="exact eigenvalues", xaxis="x", yaxis="y"))
    for i in range(k):
        color = PALETTE[i % len(PALETTE)]
        group = f"pair {i}"
        traces.append(go.Scatter(x=xs, y=ritz[:, i], mode="lines", name=f"\u03b8{i}", legendgroup=group,
                                 line=dict(color=color, width=1.6), xaxis="x", yaxis="y",
                                 hovertemplate=f"\u03b8{i} = %{{y:.10g}}<extra></extra>"))
        traces.append(go.Scatter(x=xs, y=_positive(rel[:, i]), mode="lines", name=f"res {i}", legendgroup=group,
                                 showlegend=False, line=dict(color=color, width=1.4), xaxis="x2", yaxis="y2",
                                 hovertemplate=f"pair {i}: %{{y:.2e}}<extra></extra>"))
        if errors is not None and np.isfinite(errors[:, i]).any():
            scale = max(1.0, abs(ref[i])) if i < ref.size else max(1.0, float(np.max(np.abs(ref))))
            traces.append(go.Scatter(x=xs, y=_positive(errors[:, i], 1e-17 * scale), mode="lines",
                                     name=f"err {i}", legendgroup=group, showlegend=False,
                                     line=dict(color=color, width=1.4), xaxis="x3", yaxis="y3",
                                     hovertemplate=(f"|\u03b8{i} - \u03bb{i}| = %{{y:.2e}}" if match == "index" else
                                                    f"\u03b8{i} to the nearest wanted \u03bb: %{{y:.2e}}")
                                     + "<extra></extra>"))
    cut = filter_cut(picked)
    if cut is not None:
        traces.append(go.Scatter(x=xs, y=cut[0], mode="lines", name="filter cut", customdata=cut[1],
                                 line=dict(color="#7f7f7f", width=1.2, dash="dashdot", shape="hv"), xaxis="x",
                                 yaxis="y", hovertemplate="damped beyond %{y:.6g} (degree %{customdata:d})"
                                 "<extra>filter</extra>"))
    if picked and "pass_low" in picked[-1].extras and "pass_high" in picked[-1].extras:
        # a band-pass filter's interval (chebyshev with lower / upper): the wanted Ritz values lie between
        ends = (float(picked[-1].extras["pass_low"]), float(picked[-1].extras["pass_high"]))
        degree = int(picked[-1].extras.get("degree", 0))
        traces.append(go.Scatter(x=[x0, x1, None, x0, x1], y=[ends[0], ends[0], None, ends[1], ends[1]],
                                 mode="lines", name="filter pass band", xaxis="x", yaxis="y",
                                 line=dict(color="#7f7f7f", width=1.2, dash="dashdot"),
                                 hovertemplate=f"pass band [{ends[0]:.6g}, {ends[1]:.6g}) (degree {degree})"
                                 "<extra>filter</extra>"))
    if tol is not None and tol > 0:
        traces.append(go.Scatter(x=[x0, x1], y=[tol, tol], mode="lines", name=f"tol = {tol:.0e}",
                                 line=dict(color="#d62728", width=1.2, dash="dash"), xaxis="x2", yaxis="y2",
                                 hovertemplate="tol %{y:.1e}<extra></extra>"))
    if ref is None:
        conv = np.asarray([r.n_converged for r in picked], dtype=float)
        traces.append(go.Scatter(x=xs, y=conv, mode="lines", name="converged", line=dict(color="#2ca02c", width=2,
                                 shape="hv"), xaxis="x3", yaxis="y3", showlegend=False,
                                 hovertemplate="%{y:d} converged<extra></extra>"))
    ortho = np.asarray([np.nan if r.orthogonality_loss is None else r.orthogonality_loss for r in picked], dtype=float)
    if np.isfinite(ortho).any():
        traces.append(go.Scatter(x=xs, y=_positive(ortho), mode="lines", name="orthogonality loss",
                                 line=dict(color="#444", width=1.6), xaxis="x4", yaxis="y4", showlegend=False,
                                 hovertemplate="%{y:.2e}<extra></extra>"))

    ritz_range = _focus_range(ritz, ref)
    xlabel = {"iteration": "iteration", "n_matvec": "matvecs", "elapsed_s": "seconds"}.get(x, x)
    res_label = "relative residual (estimate)" if estimated else "relative residual"
    # the gap between the columns holds the right panels' tick labels and titles (~90 px in a half-width column)
    left, right, bottom, top = (0.0, 0.415), (0.585, 1.0), (0.0, 0.40), (0.58, 1.0)
    layout = go.Layout(
        height=height, margin=dict(l=10, r=10, t=60 if title else 36, b=10),
        title=dict(text=title, x=0.0, font=dict(size=15)) if title else None,
        legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0.0, font=dict(size=11)),
        hovermode="closest", uirevision="live",
        xaxis=_axis("", left, "y", range=[x0, x1]),
        yaxis=_axis("Ritz value \u03b8", top, "x", **({"range": ritz_range} if ritz_range else {})),
        xaxis2=_axis("", right, "y2", range=[x0, x1]),
        yaxis2=_axis(res_label + " \u2016Ax\u2212\u03b8x\u2016/|\u03b8|", top, "x2", log=True),
        xaxis3=_axis(xlabel, left, "y3", range=[x0, x1]),
        yaxis3=(_axis("error |\u03b8\u1d62 \u2212 \u03bb\u1d62|", bottom, "x3", log=True) if ref is not None
                else _axis("converged pairs", bottom, "x3", rangemode="tozero", dtick=1)),
        xaxis4=_axis(xlabel, right, "y4", range=[x0, x1]),
        yaxis4=_axis("orthogonality loss max|V\u1d40V\u2212I|", bottom, "x4", log=True),
        annotations=[] if np.isfinite(ortho).any() or not records else [
            dict(text="this solver keeps no basis", xref="x4 domain", yref="y4 domain", x=0.5, y=0.5,
                 showarrow=False, font=dict(color="#888"))],
    )
    return go.Figure(data=traces, layout=layout)


def filter_cut(records: Sequence[IterationRecord]) -> tuple[np.ndarray, np.ndarray] | None:
    """(edge, degree) per record for a polynomial-filter solver (records with ``extras["filter_low"]`` /
    ``["filter_high"]``, e.g. ``chebyshev``): the edge of the damped interval on the side of the wanted
    Ritz values (its lower end when they lie below it, else its upper end), or None for other solvers."""
    if not records or "filter_low" not in records[-1].extras or "filter_high" not in records[-1].extras:
        return None
    low = np.asarray([r.extras.get("filter_low", np.nan) for r in records], dtype=float)
    high = np.asarray([r.extras.get("filter_high", np.nan) for r in records], dtype=float)
    degree = np.asarray([r.extras.get("degree", 0) for r in records], dtype=int)
    last = records[-1].ritz_values.detach().cpu().double().numpy()
    below = last.size and np.isfinite(last).any() and float(np.nanmedian(last)) <= float(low[-1])
    return (low if below else high), degree


def _focus_range(ritz: np.ndarray, ref: np.ndarray | None) -> list[float] | None:
    """y range of the Ritz panel: the later 3/4 of the history and the reference, padded 5 %.

    The first iterations are often far off and would squash the interesting part;
    they stay in the data (double-click the panel to autoscale).
    """
    if ritz.shape[0] < 20 or not np.isfinite(ritz).any():
        return None
    tail = ritz[ritz.shape[0] // 4:]
    values = tail[np.isfinite(tail)]
    if ref is not None:
        values = np.concatenate([values, ref[np.isfinite(ref)]])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    return [lo - pad, hi + pad]


# -- after a run ---------------------------------------------------------------------
def spectrum_figure(computed: Any, spectrum: Any = None, *, converged: Any = None, max_reference: int = 2000,
                    height: int = 260, title: str | None = "Computed eigenvalues against the exact spectrum") -> go.Figure:
    """Final Ritz values (markers) over the exact spectrum (ticks), on one value axis.

    ``spectrum``: every exact eigenvalue (None when unknown); more than
    ``max_reference`` are thinned evenly, the extremes always kept.
    ``converged``: optional bool per computed value (unconverged ones are hollow).
    """
    values = np.asarray(getattr(computed, "numpy", lambda: computed)(), dtype=float).ravel()
    traces: list[go.Scatter] = []
    if spectrum is not None:
        exact = np.sort(np.asarray(getattr(spectrum, "numpy", lambda: spectrum)(), dtype=float).ravel())
        shown = exact[decimate_indices(exact.size, max_reference)]
        note = "" if shown.size == exact.size else f" ({shown.size} of {exact.size} shown)"
        traces.append(go.Scatter(x=shown, y=np.zeros(shown.size), mode="markers", name="exact spectrum" + note,
                                 marker=dict(symbol="line-ns-open", size=16, color="rgba(0,0,0,0.45)"),
                                 hovertemplate="\u03bb = %{x:.10g}<extra></extra>"))
    conv = np.ones(values.size, dtype=bool) if converged is None else np.asarray(converged, dtype=bool).ravel()
    for flag, name, symbol in ((True, "computed (converged)", "circle"), (False, "computed (not converged)",
                                                                        "circle-open")):
        mask = conv == flag
        if mask.any():
            traces.append(go.Scatter(x=values[mask], y=np.ones(int(mask.sum())), mode="markers", name=name,
                                     marker=dict(symbol=symbol, size=11, color="#d62728" if flag else "#ff7f0e",
                                                 line=dict(width=2)),
                                     text=[f"\u03b8{i}" for i in np.flatnonzero(mask)],
                                     hovertemplate="%{text} = %{x:.10g}<extra></extra>"))
    layout = go.Layout(
        height=height, margin=dict(l=10, r=10, t=60 if title else 30, b=10),
        title=dict(text=title, x=0.0, font=dict(size=14)) if title else None,
        xaxis=dict(title="eigenvalue", zeroline=False, showgrid=True, gridcolor="#eceff4", automargin=True),
        yaxis=dict(tickvals=[0, 1], ticktext=["exact", "computed"], range=[-0.6, 1.6], showgrid=False,
                   automargin=True),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0.0),
    )
    return go.Figure(data=traces, layout=layout)


def _targets(records: Sequence[IterationRecord], spectrum: Any, match: str) -> list[Any] | None:
    """Per-record pass targets of a shift-invert / slicing run (``match="nearest"`` and every eigenvalue
    known), else None (:func:`ritz_errors`)."""
    if match != "nearest" or spectrum is None:
        return None
    from explorer.solvers.shift_invert import pass_references

    return pass_references(records, spectrum)


def convergence_curve(records: Sequence[IterationRecord], *, metric: str = "residual", x: str = "n_matvec",
                      reference: Any = None, dtype: str = "float64", match: str = "index",
                      spectrum: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """One curve per run: the worst pair's value per iteration.

    metric: "residual" (max relative residual over the wanted pairs) or "error"
    (max ``|theta_i - lambda_i|``, needs ``reference`` in ``which`` order; NaN otherwise;
    ``match`` as in :func:`ritz_errors`; ``spectrum``, every exact eigenvalue, lets a shift-invert
    run's passes be judged against their own targets).
    x: "n_matvec", "iteration" or "elapsed_s".
    """
    xs = np.asarray([float(getattr(r, x)) for r in records])
    ritz = records_matrix(records, "ritz_values")
    if not len(records) or ritz.size == 0:
        return xs, np.full(len(records), np.nan)
    if metric == "residual":
        rel = relative_residuals(records_matrix(records, "residual_norms"), ritz, dtype=dtype)
        with np.errstate(all="ignore"):
            ys = np.nanmax(np.where(np.isfinite(rel), rel, np.nan), axis=1) if rel.size else np.full(len(records), np.nan)
    elif metric == "error":
        if reference is None:
            return xs, np.full(len(records), np.nan)
        errors = ritz_errors(ritz, reference, match, targets=_targets(records, spectrum, match))
        with np.errstate(all="ignore"):
            finite = np.isfinite(errors).any(axis=1)
            ys = np.full(len(records), np.nan)
            if finite.any():
                ys[finite] = np.nanmax(errors[finite], axis=1)
    else:
        raise ValueError(f"unknown metric {metric!r}; use 'residual' or 'error'")
    return xs, ys


def compare_figure(runs: Sequence[Mapping[str, Any]], *, metric: str = "residual", x: str = "n_matvec",
                   tol: float | None = None, max_points: int = MAX_POINTS, height: int = 420,
                   title: str | None = None) -> go.Figure:
    """Several runs overlaid on a log axis.

    ``runs``: mappings with ``label`` and ``records`` (an IterationRecord list), and
    optionally ``reference`` (wanted exact eigenvalues in ``which`` order, needed for
    metric "error"), ``match`` (:func:`reference_match`), ``spectrum`` (every exact eigenvalue:
    see :func:`convergence_curve`) and ``dtype``. Curves are from
    :func:`convergence_curve`.
    """
    traces = []
    for i, run in enumerate(runs):
        records = list(run.get("records") or [])
        idx = decimate_indices(len(records), max_points)
        xs, ys = convergence_curve([records[j] for j in idx], metric=metric, x=x, reference=run.get("reference"),
                                   dtype=run.get("dtype", "float64"), match=run.get("match", "index"),
                                   spectrum=run.get("spectrum"))
        traces.append(go.Scatter(x=xs, y=_positive(ys), mode="lines", name=str(run.get("label", f"run {i + 1}")),
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2),
                                 hovertemplate="%{x:g}: %{y:.2e}<extra>%{fullData.name}</extra>"))
    if tol is not None and metric == "residual":
        all_x = [t.x for t in traces if len(t.x)]
        hi = max((float(np.nanmax(v)) for v in all_x), default=1.0)
        traces.append(go.Scatter(x=[0, hi], y=[tol, tol], mode="lines", name=f"tol = {tol:.0e}",
                                 line=dict(color="#d62728", dash="dash", width=1)))
    ylabel = ("max relative residual \u2016Ax\u2212\u03b8x\u2016/|\u03b8|" if metric == "residual"
              else "max error |\u03b8\u1d62 \u2212 \u03bb\u1d62|")
    xlabel = {"iteration": "iteration", "n_matvec": "matvecs", "elapsed_s": "seconds"}.get(x, x)
    layout = go.Layout(
        height=height, margin=dict(l=10, r=10, t=50 if title else 20, b=10),
        title=dict(text=title, x=0.0) if title else None,
        xaxis=dict(title=xlabel, showgrid=True, gridcolor="#eceff4", automargin=True),
        yaxis=dict(title=ylabel, type="log", exponentformat="power", showgrid=True, gridcolor="#eceff4",
                   automargin=True),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0.0),
    )
    return go.Figure(data=traces, layout=layout)


# -- matrix preview ------------------------------------------------------------------
def matrix_figure(blocks: np.ndarray, n: int, *, title: str | None = None, height: int = 360,
                  m: int | None = None) -> go.Figure:
    """Heatmap of ``log10`` of block sums of ``|A|`` (``explorer.problems.preview.block_abs``); zero blocks blank.

    Axis ticks are row/column indices of the full n x n matrix (m x n with ``m``), so a 4 x 4 block
    grid of a 1000 x 1000 matrix still reads 0..999.
    """
    blocks = np.asarray(blocks, dtype=float)
    m = n if m is None else m
    rows_cells = blocks.shape[0] if blocks.ndim == 2 else 0
    cells = blocks.shape[1] if blocks.ndim == 2 else 0
    step, row_step = n / max(cells, 1), m / max(rows_cells, 1)
    centers = (np.arange(cells) + 0.5) * step - 0.5
    row_centers = (np.arange(rows_cells) + 0.5) * row_step - 0.5
    with np.errstate(divide="ignore"):
        z = np.where(blocks > 0, np.log10(np.where(blocks > 0, blocks, 1.0)), np.nan)
    label = ("|a\u1d62\u2c7c|" if step <= 1 and row_step <= 1
             else f"sum |a\u1d62\u2c7c| per {row_step:.3g}\u00d7{step:.3g} block")
    heat = go.Heatmap(z=z, x=centers, y=row_centers, colorscale="Viridis", hoverongaps=False,
                      colorbar=dict(title=dict(text="log\u2081\u2080", side="right"), thickness=12),
                      hovertemplate="rows ~%{y:.0f}, cols ~%{x:.0f}<br>log\u2081\u2080 " + label
                      + " = %{z:.2f}<extra></extra>")
    layout = go.Layout(
        height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        title=dict(text=title, x=0.0, font=dict(size=14)) if title else None,
        xaxis=dict(title="column", range=[-0.5, n - 0.5], showgrid=False, constrain="domain",
                   automargin=True),
        yaxis=dict(title="row", range=[m - 0.5, -0.5], showgrid=False, scaleanchor="x", automargin=True),
    )
    return go.Figure(data=[heat], layout=layout)
