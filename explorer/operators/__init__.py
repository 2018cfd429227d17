"""Linear operators: one contract (shape, dtype, device, matvec/matmat, to) for every input."""

from explorer.operators.base import SUPPORTED_DTYPES, LinearOperator
from explorer.operators.concrete import (
    CallableOperator,
    CountedOperator,
    DeflatedOperator,
    DenseOperator,
    ShiftedOperator,
    SparseOperator,
    SymmetrizedOperator,
)
from explorer.operators.convert import (
    NotSymmetricError,
    as_operator,
    as_rectangular_operator,
    check_symmetric,
    symmetry_error,
)

__all__ = [
    "SUPPORTED_DTYPES",
    "CallableOperator",
    "CountedOperator",
    "DeflatedOperator",
    "DenseOperator",
    "LinearOperator",
    "NotSymmetricError",
    "ShiftedOperator",
    "SparseOperator",
    "SymmetrizedOperator",
    "as_operator",
    "as_rectangular_operator",
    "check_symmetric",
    "symmetry_error",
]
