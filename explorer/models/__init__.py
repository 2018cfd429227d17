"""Models: loss Hessians of exported models and spectra of their weights (no Streamlit here).

    >>> from explorer.models import load_exported_model, load_dataset, HessianOperator
    >>> from explorer.solvers import solve
    >>> model = load_exported_model("sample_data/models/mlp.pt2")            # doctest: +SKIP
    >>> data = load_dataset("sample_data/models/mlp_data.safetensors")       # doctest: +SKIP
    >>> H = HessianOperator(model, data, loss="cross_entropy", params="0.*")  # doctest: +SKIP
    >>> solve("lanczos", H, k=5).eigenvalues                                 # doctest: +SKIP
"""

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

__all__ = [
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
