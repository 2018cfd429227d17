"""Showing figures: ``show(fig, key)`` plus the pure builders of ``explorer.plots.figures`` re-exported.

The builders live in ``explorer.plots.figures`` (plotly only, importable without Streamlit) so
notebooks, tests and other pages reuse them; this module only adds the Streamlit call.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer.plots.figures import (  # noqa: F401 - re-exported for pages
    compare_figure,
    convergence_curve,
    live_figure,
    matrix_figure,
    reference_match,
    spectrum_figure,
    wanted_reference,
)

__all__ = ["show", "PLOTLY_CONFIG", "compare_figure", "convergence_curve", "live_figure", "matrix_figure",
           "reference_match", "spectrum_figure", "wanted_reference"]

PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def show(figure: Any, key: str, **kwargs: Any) -> Any:
    """``st.plotly_chart`` with the app's config (full width, no plotly logo)."""
    return st.plotly_chart(figure, key=key, config=PLOTLY_CONFIG, **kwargs)
