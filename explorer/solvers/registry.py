"""The solver registry: the app's solver menu, its parameter forms and the tests all read it.

A solver is one function with the shared signature
``solver(operator, k, *, which, tol, max_iter, X0=None, seed=None, tracker=None, B=None, **extras)``
plus one ``SolverSpec`` that declares its extra parameters (type, default, range, help).
Adding a solver is one module and one ``register_solver`` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from explorer.tracking.results import EigenResult
from explorer.solvers._common import check_int, is_real_number

__all__ = ["ParamSpec", "SolverSpec", "SOLVERS", "COMMON_PARAMS", "register_solver", "get_solver", "solve",
           "solver_names"]

ParamKind = Literal["int", "float", "choice", "bool"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a solver, enough to build a form widget and validate it."""

    name: str
    kind: ParamKind
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    log_scale: bool = False  # floats spanning decades (tolerances)
    optional: bool = False  # None allowed (means "solver picks", or what ``placeholder`` says)
    # What an empty (None) value means, as a form shows it in the empty field; None: "auto (solver picks)".
    placeholder: str | None = None
    # "choice" only: what the form shows for each choice (default: the value itself), and
    # whether any whole number within minimum/maximum is accepted besides the listed choices
    # (e.g. "auto" or an integer step count; the form offers the listed ones).
    labels: tuple[str, ...] = ()
    integers: bool = False

    def label(self, value: Any) -> str:
        """The form's text for a choice ``value``."""
        for choice, text in zip(self.choices, self.labels):
            if choice == value and type(choice) is type(value):
                return text
        return str(value)

    def validate(self, value: Any) -> Any:
        """Return the value normalized, or raise ValueError naming the parameter and the rule."""
        if value is None and self.optional:
            return None
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"`{self.name}` must be True or False, got {value!r}")
            return value
        if self.kind == "choice":
            if value in self.choices and not (self.integers and isinstance(value, bool)):  # (True == 1)
                return value
            if not (self.integers and not isinstance(value, (str, bool)) and value is not None):
                more = " or a whole number" if self.integers else ""
                raise ValueError(f"`{self.name}` must be one of {list(self.choices)}{more}, got {value!r}")
            value = check_int(self.name, value, minimum=None)
        if self.kind == "int":
            value = check_int(self.name, value, minimum=None)
        elif self.kind == "float":
            if not is_real_number(value):
                raise TypeError(f"`{self.name}` must be a number, got {value!r}")
            value = float(value)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"`{self.name}` must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"`{self.name}` must be <= {self.maximum}, got {value!r}")
        return value


def record_cadence(name: str, unit: str, help: str) -> ParamSpec:
    """The parameter that says how often a solver records (Lanczos' ``ritz_every``, power
    iteration's ``record_every``): ``"auto"`` (time-based, about every 20 ms: the live view),
    1 (one record per ``unit``, e.g. per step: the lessons) or any whole number s >= 1."""
    return ParamSpec(name, "choice", "auto", help, choices=("auto", 1, 10, 100),
                     labels=("auto (about every 20 ms)", f"record every {unit}", f"every 10 {unit}s",
                             f"every 100 {unit}s"),
                     integers=True, minimum=1)


COMMON_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("k", "int", 4, "How many eigenpairs to compute.", minimum=1),
    ParamSpec("which", "choice", "LA", "Which end of the spectrum: LA largest algebraic, SA smallest "
              "algebraic, LM largest magnitude, BE both ends.", choices=("LA", "SA", "LM", "BE")),
    ParamSpec("tol", "float", 1e-6, "Relative residual tolerance: a pair converges when "
              "||A x - theta x|| <= tol * max(|theta|, sqrt(eps) ||A||).", minimum=1e-16, maximum=1.0,
              log_scale=True),
    ParamSpec("max_iter", "int", 500, "Iteration limit (the meaning of one iteration is the solver's).",
              minimum=1),
    ParamSpec("seed", "int", 0, "Seed of the random start (a local torch.Generator).", minimum=0,
              optional=True),
)


@dataclass(frozen=True)
class SolverSpec:
    """What the registry knows about one solver."""

    name: str
    label: str
    fn: Callable[..., EigenResult]
    summary: str
    which: tuple[str, ...]
    params: tuple[ParamSpec, ...] = ()
    supports_B: bool = False
    matrix_free: bool = True  # needs only matvecs (False: needs the assembled matrix)
    default_tol: float = 1e-6
    default_max_iter: int = 500
    max_n: int | None = None  # refuses larger problems (dense eigh)
    k_limit: Callable[[int], int] | None = None  # largest k for a given n
    references: tuple[str, ...] = field(default=())
    # What the method's convergence theory needs of the spectrum, or None for any symmetric
    # operator: "gap" (|lambda_(j+1) / lambda_j| well below 1 for each wanted pair: power
    # iteration) or "fast decay" (decaying singular values: randomized methods). The contract
    # tests skip problems outside it; the UI can warn.
    spectrum_assumption: Literal["gap", "fast decay"] | None = None
    # What it computes: "eigen" (eigenpairs of a symmetric n x n operator, an EigenResult) or
    # "svd" (singular triplets of any m x n operator that provides A^T, a SingularResult whose
    # eigenvalues are the singular values; which LA / SA = largest / smallest). The app offers
    # the SVD solvers alone for a rectangular matrix; the contract tests check each kind
    # against its own exact spectra.
    kind: Literal["eigen", "svd"] = "eigen"
    # Parameters with which the solver accepts a B although ``supports_B`` is False: lanczos with
    # ``sigma`` or an interval runs shift-invert on (A - sigma B)^-1 B (explorer.solvers.shift_invert),
    # which handles a symmetric-definite pencil. ``accepts_B(params)`` is the check the app makes.
    supports_B_with: tuple[str, ...] = ()

    def accepts_B(self, params: Any = None) -> bool:
        """True when the solver solves ``A x = lambda B x`` with these parameters (a mapping of its extras)."""
        if self.supports_B:
            return True
        get = getattr(params, "get", None)
        return get is not None and any(get(name) is not None for name in self.supports_B_with)

    def param(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no parameter {name!r}")

    def defaults(self) -> dict[str, Any]:
        return {spec.name: spec.default for spec in self.params}


SOLVERS: dict[str, SolverSpec] = {}


def register_solver(spec: SolverSpec) -> SolverSpec:
    if spec.name in SOLVERS and SOLVERS[spec.name].fn is not spec.fn:
        raise ValueError(f"a solver named {spec.name!r} is already registered")
    SOLVERS[spec.name] = spec
    return spec


def get_solver(name: str) -> SolverSpec:
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(SOLVERS)}") from None


def solve(name: str, operator: Any, k: int, **kwargs: Any) -> EigenResult:
    """Run the registered solver ``name`` with validated extras."""
    spec = get_solver(name)
    common = {"which", "tol", "max_iter", "X0", "seed", "tracker", "B"}
    for key, value in list(kwargs.items()):
        if key in common:
            continue
        kwargs[key] = spec.param(key).validate(value) if any(p.name == key for p in spec.params) else value
        if not any(p.name == key for p in spec.params):
            raise TypeError(f"{name} got an unexpected parameter `{key}`; it accepts "
                            f"{sorted(common | {p.name for p in spec.params})}")
    return spec.fn(operator, k, **kwargs)


def solver_names(*, matrix_free: bool | None = None, kind: str | None = None) -> Sequence[str]:
    """Registered names, optionally only the matrix-free ones and / or one ``kind`` ("eigen", "svd")."""
    return [n for n, s in SOLVERS.items() if (matrix_free is None or s.matrix_free == matrix_free)
            and (kind is None or s.kind == kind)]
