"""Problems: where a matrix comes from, and what is known about its spectrum.

* ``generators``: Laplacians, diagonals, prescribed spectra, Wishart, Mikota, graph
  Laplacians, each with its exact eigenvalues (re-exported here: ``problems.laplacian_2d``).
* ``files``: loading and saving matrices (.npy .npz .mtx .csv .pt .safetensors) through
  their real parsers.
* ``samples``: the files in ``sample_data/`` and their manifest of exact eigenvalues.
* ``sources``: ``ProblemSource``, the app's description of a problem (sample, generated,
  uploaded) and how to load it.
* ``preview``: cheap facts about a matrix (size, sparsity, symmetry, norm) for the preview.
"""

from explorer.problems.generators import *  # noqa: F401,F403
from explorer.problems.generators import __all__ as _generators_all

__all__ = list(_generators_all)
