"""Solvers: one function each, one shared signature, one registry (``SOLVERS``).

Importing this package registers every solver.
"""

from explorer.solvers.registry import COMMON_PARAMS, SOLVERS, ParamSpec, SolverSpec, get_solver, register_solver, solve
from explorer.solvers.eigh import eigh  # noqa: E402  (registers)
from explorer.solvers.lobpcg import lobpcg  # noqa: E402  (registers)
from explorer.solvers.power import power_iteration  # noqa: E402  (registers)
from explorer.solvers.randomized import randomized_eigh, randomized_svd  # noqa: E402  (registers)
from explorer.solvers.lanczos import lanczos  # noqa: E402
from explorer.solvers.svd import golub_kahan  # noqa: E402  (registers)
from explorer.solvers.chebyshev import chebyshev  # noqa: E402  (registers)

__all__ = ["COMMON_PARAMS", "SOLVERS", "ParamSpec", "SolverSpec", "chebyshev", "eigh", "get_solver", "golub_kahan", "lanczos", "lobpcg", "power_iteration", "randomized_eigh", "randomized_svd", "register_solver", "solve"]
