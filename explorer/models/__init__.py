"""Models: loss Hessians of exported models and spectra of their weights (no Streamlit here).

    >>> from explorer.models import load_exported_model, load_dataset, HessianOperator
    >>> from explorer.solvers import solve
    >>> model = load_exported_model("sample_data/models/mlp.pt2")            # doctest: +SKIP
    >>> data = load_dataset("sample_data/models/mlp_data.safetensors")       # doctest: +SKIP
    >>> H = HessianOperator(model, data, loss="cross_entropy", params="0.*")  # doctest: +SKIP
    >>> solve("lanczos", H, k=5).eigenvalues                                 # doctest: +SKIP
    >>> spectral_density(H, n_probes=8, n_steps=60).density()               # doctest: +SKIP
    >>> hutchinson_trace(H, n_probes=100).trace                              # doctest: +SKIP

Modules: ``loading`` (vetted .pt2 / data / state-dict loaders), ``hessian`` (HessianOperator,
GGNOperator, dense_hessian), ``analysis`` (SLQ density, Hutchinson trace, layer shares),
``weights`` (tensor table, singular values, empirical spectral density), ``samples`` (the
sample MLP and CNN).
"""

from explorer.models.analysis import SpectralDensity, TraceEstimate, hutchinson_trace, layer_norms, spectral_density
from explorer.models.hessian import (
    LOSSES,
    CurvatureOperator,
    GGNOperator,
    HessianOperator,
    ParameterBlock,
    dense_hessian,
    normalize_loss,
    select_parameters,
)
from explorer.models.loading import (
    MAX_FILE_BYTES,
    Dataset,
    ExportedModel,
    ModelInputError,
    UnsafeFileError,
    check_pt2_archive,
    load_dataset,
    load_exported_model,
    load_state_dict,
)
from explorer.models.weights import (
    GramOperator,
    SingularValues,
    empirical_spectral_density,
    randomized_svd,
    singular_spectrum,
    tensor_table,
    top_singular_values,
    weight_matrix,
)

__all__ = [
    "GramOperator",
    "SingularValues",
    "SpectralDensity",
    "TraceEstimate",
    "empirical_spectral_density",
    "hutchinson_trace",
    "layer_norms",
    "randomized_svd",
    "singular_spectrum",
    "spectral_density",
    "tensor_table",
    "top_singular_values",
    "weight_matrix",
    "LOSSES",
    "MAX_FILE_BYTES",
    "CurvatureOperator",
    "Dataset",
    "ExportedModel",
    "GGNOperator",
    "HessianOperator",
    "ModelInputError",
    "ParameterBlock",
    "UnsafeFileError",
    "check_pt2_archive",
    "dense_hessian",
    "load_dataset",
    "load_exported_model",
    "load_state_dict",
    "normalize_loss",
    "select_parameters",
]
