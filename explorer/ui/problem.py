"""Choosing, loading (cached) and previewing the problem: Samples, Generate, Upload.

The problem in use is ``st.session_state["problem_source"]`` (an
``explorer.problems.sources.ProblemSource``); it changes only when a new choice loads
successfully, so a bad upload or generator setting leaves the previous problem in
place. Loaded problems are shared read-only through ``st.cache_resource`` keyed by
the source (an upload by the SHA-256 of its bytes).

Reusable entry points: ``active_problem()`` -> (source, problem), ``cached_problem``,
``cached_reference`` (every exact eigenvalue or None), ``problem_sidebar()``,
``problem_preview(source, problem)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from explorer.runs.jobs import friendly_error
from explorer.plots.figures import matrix_figure
from explorer.problems.preview import MatrixFacts, block_abs, describe
from explorer.problems.sources import REFERENCE_MAX_N, ProblemSource, load_problem, reference_spectrum
from explorer.ui.state import ACTIVE_SOURCE, ensure, ensure_choice
from explorer.ui.widgets import param_form

__all__ = [
    "FALLBACK",
    "sample_names",
    "default_source",
    "cached_problem",
    "cached_reference",
    "cached_preview",
    "upload_limit_mb",
    "active_problem",
    "set_active",
    "problem_sidebar",
    "problem_preview",
    "is_svd",
]

FALLBACK = ProblemSource.generated("laplacian_2d", {"nx": 30, "ny": 30})
_UPLOADS = "_upload_bytes"  # {digest: bytes} of the upload in use (survives page switches)
_ERROR = "problem_error"  # last problem-loading error (str) or None
_TRIED = "_upload_tried"  # the upload source last attempted
MODES = ("Sample", "Generate", "Upload")


# -- catalogue -----------------------------------------------------------------------
def _samples_module() -> Any:
    try:
        from explorer.problems import samples
    except ImportError:
        return None
    return samples


def sample_names() -> list[str]:
    """Names of the bundled samples (manifest order); [] when there are none."""
    module = _samples_module()
    if module is None:
        return []
    try:
        items = module.list_samples()
    except Exception:  # noqa: BLE001 - a broken manifest must not break the page
        return []
    return [item if isinstance(item, str) else str(getattr(item, "name")) for item in items]


def _sample_labels() -> dict[str, str]:
    module = _samples_module()
    labels: dict[str, str] = {}
    if module is None:
        return labels
    try:
        for item in module.list_samples():
            if isinstance(item, str):
                labels[item] = item
            else:
                labels[str(item.name)] = str(getattr(item, "title", None) or item.name)
    except Exception:  # noqa: BLE001
        pass
    return labels


def default_source() -> ProblemSource:
    """The first sample (so Run works at once), else a small 2-D Laplacian."""
    names = sample_names()
    return ProblemSource.sample(names[0]) if names else FALLBACK


def upload_limit_mb() -> int:
    """server.maxUploadSize from .streamlit/config.toml (MB)."""
    try:
        return int(st.get_option("server.maxUploadSize"))
    except Exception:  # noqa: BLE001
        return 200


# -- cached loading ------------------------------------------------------------------
@st.cache_resource(max_entries=12, show_spinner="Loading the problem ...")
def cached_problem(source: ProblemSource, _data: bytes | None = None, _b_data: bytes | None = None,
                   _max_bytes: int | None = None) -> Any:
    """The Problem for ``source`` (shared read-only across sessions; uploads keyed by content hash)."""
    return load_problem(source, _data, _b_data, max_bytes=_max_bytes)


@st.cache_resource(max_entries=12, show_spinner="Computing the exact spectrum once (dense eigh) ...")
def cached_reference(source: ProblemSource, _problem: Any) -> Any:
    """Every exact eigenvalue, ascending (analytic, or dense eigh for n <= 4000), or None; for an SVD
    problem every singular value (known, or a dense SVD)."""
    return reference_spectrum(_problem, REFERENCE_MAX_N)


@st.cache_resource(max_entries=12, show_spinner="Preparing the preview ...")
def cached_preview(source: ProblemSource, _problem: Any) -> tuple[MatrixFacts, np.ndarray | None]:
    """(facts, block-aggregated |A|) for the preview."""
    return describe(_problem.operator), block_abs(_problem.operator)


def _load(source: ProblemSource) -> Any:
    data = b_data = None
    if source.kind == "upload":
        store = st.session_state.get(_UPLOADS, {})
        data = store.get(source.digest)
        b_data = store.get(source.b_digest) if source.b_digest else None
    return cached_problem(source, data, b_data, upload_limit_mb() * 1024 * 1024)


def set_active(source: ProblemSource, data: bytes | None = None, b_data: bytes | None = None) -> Any:
    """Load ``source`` and make it the problem in use; raises (keeping the old one) when it fails."""
    problem = cached_problem(source, data, b_data, upload_limit_mb() * 1024 * 1024)
    if source.kind == "upload":
        store = {source.digest: data}
        if b_data is not None:
            store[source.b_digest] = b_data
        st.session_state[_UPLOADS] = store
    st.session_state[ACTIVE_SOURCE] = source
    st.session_state[_ERROR] = None
    return problem


def active_problem() -> tuple[ProblemSource, Any]:
    """(source, problem) in use; the default problem when nothing was chosen yet."""
    source = ensure(ACTIVE_SOURCE, default_source())
    try:
        return source, _load(source)
    except Exception as error:  # noqa: BLE001 - e.g. a sample file went missing
        fallback = default_source() if source != default_source() else FALLBACK
        st.session_state[_ERROR] = f"Could not load {source.label}: {friendly_error(error)}"
        st.session_state[ACTIVE_SOURCE] = fallback
        return fallback, _load(fallback)


# -- sidebar -------------------------------------------------------------------------
def _on_sample() -> None:
    name = st.session_state.get("sample")
    if name:
        try:
            set_active(ProblemSource.sample(name))
        except Exception as error:  # noqa: BLE001
            st.session_state[_ERROR] = f"Could not load sample {name}: {friendly_error(error)}"


def _on_mode() -> None:
    if st.session_state.get("problem_mode") == "Sample":
        _on_sample()


def _generator_params(name: str) -> dict[str, Any]:
    from explorer.problems import GENERATORS

    spec = GENERATORS[name]
    return {p.name: st.session_state.get(f"g_{name}_{p.name}", p.default) for p in spec.params}


def _on_generate() -> None:
    name = st.session_state.get("gen_name")
    if not name:
        return
    try:
        params = _generator_params(name)
        set_active(ProblemSource.generated(name, params))
    except Exception as error:  # noqa: BLE001 - shown in the sidebar, the old problem stays
        st.session_state[_ERROR] = f"Could not generate {name}: {friendly_error(error)}"


def _symmetrize_now() -> None:
    st.session_state["symmetrize"] = True


def _upload_section(box: Any) -> None:
    from explorer.problems.files import SUPPORTED_SUFFIXES

    limit = upload_limit_mb()
    types = sorted({suffix.lstrip(".").split(".")[-1] for suffix in SUPPORTED_SUFFIXES})
    file = box.file_uploader(f"Matrix A ({', '.join(SUPPORTED_SUFFIXES)}; up to {limit} MB)", type=types,
                             key="upload", help="A symmetric real n x n matrix (eigenvalues), or a rectangular "
                             "m x n one (singular values, with the SVD solvers): dense (.npy, .csv, .pt, "
                             ".safetensors, .npz) or sparse (.mtx, .mtx.gz, scipy .npz, sparse .pt).")
    ensure("symmetrize", False)
    box.checkbox("Symmetrize: use (A + A\u1d40)/2", key="symmetrize",
                 help="For a matrix that is not symmetric: solve the symmetric part instead.")
    with box.expander("Generalized problem A x = \u03bb B x (optional)"):
        b_file = st.file_uploader("Matrix B (symmetric positive definite)", type=types, key="upload_b",
                                  help="Same size as A. Only solvers that support B (e.g. lobpcg, eigh) accept it.")
    if file is None:
        return
    data = file.getvalue()
    b_data = b_file.getvalue() if b_file is not None else None
    for name, blob in ((file.name, data), (getattr(b_file, "name", ""), b_data)):
        if blob is not None and len(blob) > limit * 1024 * 1024:
            st.session_state[_ERROR] = (f"`{name}` is {len(blob) / 2**20:.1f} MB, above the upload limit of "
                                        f"{limit} MB (server.maxUploadSize); use a smaller or sparse file.")
            st.session_state[_TRIED] = None
            return
    source = ProblemSource.upload(file.name, data, b_filename=getattr(b_file, "name", ""), b_data=b_data,
                                  symmetrize=bool(st.session_state.get("symmetrize")))
    if st.session_state.get(_TRIED) == source:
        return
    st.session_state[_TRIED] = source
    try:
        set_active(source, data, b_data)
    except Exception as error:  # noqa: BLE001 - every failure is a message; the old problem stays
        st.session_state[_ERROR] = f"Could not load `{file.name}`: {friendly_error(error)}"


def problem_sidebar(container: Any = None) -> None:
    """The "Problem" section: mode radio, then samples / generator form / uploaders; errors shown here."""
    box = container if container is not None else st.sidebar
    names = sample_names()
    ensure("problem_mode", "Sample" if names else "Generate")
    box.radio("Source", MODES, key="problem_mode", horizontal=True, on_change=_on_mode,
              help="A bundled sample, a generated matrix with known eigenvalues, or your own file.")
    mode = st.session_state["problem_mode"]
    if mode == "Sample":
        if not names:
            box.info("No samples are installed; use Generate or Upload.")
        else:
            active = st.session_state.get(ACTIVE_SOURCE)
            ensure_choice("sample", names, active.name if active is not None and active.kind == "sample" else None)
            labels = _sample_labels()
            box.selectbox("Sample", names, key="sample", format_func=lambda n: labels.get(n, n),
                          on_change=_on_sample, help="Matrices shipped in sample_data/ (see its manifest).")
    elif mode == "Generate":
        from explorer.problems import GENERATORS

        gen_names = list(GENERATORS)
        ensure_choice("gen_name", gen_names)
        box.selectbox("Generator", gen_names, key="gen_name", format_func=lambda n: GENERATORS[n].label)
        spec = GENERATORS[st.session_state["gen_name"]]
        box.caption(spec.summary)
        param_form(spec.params, f"g_{spec.name}_", container=box)
        box.button("Generate", key="generate", on_click=_on_generate, icon=":material/auto_awesome:",
                   help="Build this matrix and use it (the current problem stays until then).")
    else:
        _upload_section(box)
    error = st.session_state.get(_ERROR)
    if error:
        box.error(error, icon=":material/error:")
        if "not symmetric" in error and mode == "Upload" and not st.session_state.get("symmetrize"):
            box.button("Use (A + A\u1d40)/2 instead", key="symmetrize_now", on_click=_symmetrize_now)
        active = st.session_state.get(ACTIVE_SOURCE)
        if active is not None:
            box.caption(f"Still using: {active.label}")


# -- preview -------------------------------------------------------------------------
def spectrum_note(problem: Any, spectrum: Any) -> str:
    if getattr(problem, "kind", "eigen") == "svd":
        if getattr(problem, "singular_values", None) is not None:
            return "exact (known)"
        return "exact (dense SVD)" if spectrum is not None else "unknown (too large for a dense SVD)"
    if getattr(problem, "eigenvalues", None) is not None:
        return "exact (known)"
    if spectrum is not None:
        return "exact (dense eigh)"
    return f"unknown (n > {REFERENCE_MAX_N:,})"


def is_svd(problem: Any) -> bool:
    """A singular-value problem (a rectangular matrix): the SVD solvers alone apply."""
    return getattr(problem, "kind", "eigen") == "svd"


def problem_preview(source: ProblemSource, problem: Any, *, expanded: bool = False, spectrum: Any = None) -> None:
    """Expander with n (m x n for a rectangular matrix), nnz, dtype, symmetry probe, norm bounds and a
    downsampled |A| heatmap."""
    m, n = problem.operator.shape
    size = f"{m:,} \u00d7 {n:,}, SVD" if is_svd(problem) else f"n = {n:,}"
    with st.expander(f"Preview: {size}, {problem.operator.kind}" + (", with B" if problem.B is not None else ""),
                     expanded=expanded, icon=":material/grid_on:"):
        facts, blocks = cached_preview(source, problem)
        left, right = st.columns([1, 1])
        with left:
            what = "singular values" if is_svd(problem) else "spectrum"
            rows = facts.as_rows() + [(what, spectrum_note(problem, spectrum))]
            if spectrum is not None and len(spectrum):
                label = "singular value range" if is_svd(problem) else "eigenvalue range"
                rows.append((label, f"[{float(spectrum[0]):.6g}, {float(spectrum[-1]):.6g}]"))
            if problem.B is not None:
                rows.append(("B", f"{problem.B.kind}, n = {problem.B.shape[0]:,}"))
            st.dataframe(pd.DataFrame(rows, columns=["property", "value"]), hide_index=True, key="preview_facts")
        with right:
            if blocks is None:
                st.info("No picture for a large matrix-free operator.")
            else:
                rows_cells, cells = blocks.shape
                title = ("|A| entries" if (rows_cells, cells) == (m, n)
                         else f"|A| aggregated into {rows_cells} x {cells} blocks")
                st.plotly_chart(matrix_figure(blocks, n, title=title, m=m), key="preview_heatmap",
                                config={"displaylogo": False})
