"""Plotly figures, importable without Streamlit (notebooks, tests and pages share them).

* ``figures``: the live convergence view, spectra, matrix previews, convergence curves.
* ``compare``: the Compare page's overlays; ``lessons``: lesson charts; ``models``: Hessian
  densities, traces and weight spectra.
"""

from explorer.plots.figures import *  # noqa: F401,F403
from explorer.plots.figures import __all__ as _figures_all

__all__ = list(_figures_all)
