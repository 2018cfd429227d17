"""Compare solver configurations on one problem under one matvec budget (pure logic, no Streamlit).

A comparison is one problem, a shared ``k`` / ``which`` / ``tol`` / ``max_iter`` / seed /
dtype (:class:`CompareSettings`) and two to five :class:`RunConfig` s (any registered
solver with any of its parameters). :func:`run_comparison` runs them one after another
(fair wall-time numbers) or side by side in threads, each under the same matvec
budget, and collects every run's records in a thread-safe :class:`ComparisonCollector`
that a live page can read while the runs go on.

The budget is a tracker (:class:`MatvecBudget`): after each iteration it raises
``StopSolve`` once ``record.n_matvec >= budget``, so every solver stops cleanly with its
partial result and status STOPPED. A solver can overshoot by the matvecs of one
iteration (a LOBPCG block step applies A to up to ``block_size`` vectors); the table
reports the true count.

After the runs: :func:`summary_frame` (matvecs and time to reach tol, final error,
converged count, status), :func:`angle_frame` (principal angles between the
eigenvector subspaces the runs found, Bjorck & Golub 1973 via
``scipy.linalg.subspace_angles``) and per-run :func:`explorer.analysis.diagnosis.diagnose`
findings.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.linalg
import torch

from explorer.operators.devices import parse_dtype
from explorer.analysis.diagnosis import Finding, diagnose
from explorer.runs.jobs import friendly_error
from explorer.solvers import SOLVERS, get_solver, solve
from explorer.solvers._common import is_real_number, select_order
from explorer.solvers.shift_invert import SIGMA_WHICH, last_pass_start, pass_references, spectral_reference
from explorer.tracking import IterationRecord, NullTracker, SolveStart, StopSolve, Tracker

__all__ = [
    "MIN_CONFIGS",
    "MAX_CONFIGS",
    "RunConfig",
    "CompareSettings",
    "MatvecBudget",
    "RunOutcome",
    "ComparisonCollector",
    "run_comparison",
    "wanted_reference",
    "error_series",
    "first_reaching",
    "summary_frame",
    "principal_angles",
    "angle_frame",
    "result_vectors",
    "result_values",
    "is_svd",
    "reference_for",
    "sigma_solvers",
    "spectral_of",
    "target_note",
]

MIN_CONFIGS = 2
MAX_CONFIGS = 5
_COMMON_OVERRIDES = ("which", "tol", "max_iter", "seed", "X0")
_SPECTRAL = ("sigma", "lower", "upper")


def sigma_solvers(kind: str = "eigen") -> list[str]:
    """The registered solvers of ``kind`` that take a ``sigma`` (the k eigenvalues nearest it)."""
    names = [name for name, spec in SOLVERS.items() if spec.kind == kind and any(p.name == "sigma" for p in spec.params)]
    return sorted(names, key=lambda name: name == "eigh")  # the iterative ones first, the dense reference last


def spectral_of(config: RunConfig, settings: "CompareSettings") -> dict[str, Any]:
    """``sigma``, ``lower``, ``upper`` a run is solved with (its own, or the shared sigma where it applies)."""
    params = settings.resolve(config).params
    return {name: params.get(name) for name in _SPECTRAL}


@dataclass(frozen=True)
class RunConfig:
    """One solver configuration.

    Attributes:
        solver: a key of ``explorer.solvers.SOLVERS``.
        params: that solver's extra parameters (validated by its ``ParamSpec`` s), and
            optionally per-run overrides of ``which`` / ``tol`` / ``max_iter`` / ``seed``
            and a start ``X0`` (the lessons pass one so the theory knows the start angle).
        label: shown in legends and tables (default: solver and parameters).
        problem: run on this problem instead of the comparison's (the eigh-cost lesson
            times one solver on several sizes).
        fn: call this core function instead of the registry's ``solver``, as
            ``fn(operator, k, tracker=..., **params)`` (the shared settings are not
            passed). For a function the app's solver menu does not list, such as
            ``explorer.solvers.randomized.randomized_svd`` (singular triplets) in the
            randomized-SVD lesson; ``solver`` is then only its name.
    """

    solver: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    problem: Any = None
    fn: Callable[..., Any] | None = None

    def display(self) -> str:
        if self.label:
            return self.label
        shown = ", ".join(f"{key}={value}" for key, value in self.params.items() if value is not None and key != "X0")
        return f"{self.solver}({shown})" if shown else self.solver

    def extras(self) -> dict[str, Any]:
        return {key: value for key, value in self.params.items() if key not in _COMMON_OVERRIDES}


@dataclass(frozen=True)
class CompareSettings:
    """What every run shares.

    Attributes:
        k: wanted eigenpairs.
        which: LA, SA, LM or BE (each solver must support it).
        tol: relative residual tolerance.
        max_iter: iteration limit per run (None: each solver's default).
        budget: matvec budget per run (None: no budget).
        seed: seed of every run's random start (the same start for a fair comparison).
        dtype: "float64" or "float32" (the operator is cast once per run).
        mode: "sequential" (one after another: fair times) or "parallel" (threads).
        sigma: compare on the k eigenvalues nearest sigma instead of an end of the spectrum:
            every run's solver must take a ``sigma`` (shift-invert in lanczos / lobpcg, the
            nearest of the dense spectrum in eigh; :func:`sigma_solvers`), which gets it unless
            the run sets its own ``sigma`` or interval; ``which`` is then LM (nearest), LA
            (nearest above) or SA (nearest below), and the reference is the k exact eigenvalues
            nearest sigma on that side.
    """

    k: int = 4
    which: str = "LA"
    tol: float = 1e-6
    max_iter: int | None = None
    budget: int | None = 2000
    seed: int | None = 0
    dtype: str = "float64"
    mode: Literal["sequential", "parallel"] = "sequential"
    sigma: float | None = None

    def resolve(self, config: RunConfig) -> RunConfig:
        """``config`` with the shared ``sigma`` among its parameters where it applies (a registry solver that
        takes one, and no ``sigma`` / interval of its own); otherwise ``config`` itself."""
        if self.sigma is None or config.fn is not None or config.solver not in SOLVERS:
            return config
        if "sigma" not in {p.name for p in SOLVERS[config.solver].params}:
            return config
        if any(config.params.get(name) is not None for name in _SPECTRAL):
            return config
        return dataclasses.replace(config, params={**config.params, "sigma": float(self.sigma)})

    def kwargs_for(self, config: RunConfig) -> dict[str, Any]:
        common: dict[str, Any] = {"which": self.which, "tol": self.tol, "max_iter": self.max_iter, "seed": self.seed}
        common.update({key: config.params[key] for key in _COMMON_OVERRIDES if key in config.params})
        if common["max_iter"] is None:
            common["max_iter"] = get_solver(config.solver).default_max_iter
        return {**common, **config.extras()}


def check_configs(configs: Sequence[RunConfig], settings: CompareSettings, n: int | None = None, *,
                  count: tuple[int, int] = (MIN_CONFIGS, MAX_CONFIGS)) -> None:
    """Raise ValueError/TypeError (naming the run) for configurations that cannot run.

    Checks the count (``count``, default 2 to 5), that each solver exists and supports
    ``which``, and each parameter against its ``ParamSpec``.
    """
    if not count[0] <= len(configs) <= count[1]:
        raise ValueError(f"a comparison needs {count[0]} to {count[1]} configurations, got {len(configs)}")
    if settings.budget is not None and (isinstance(settings.budget, bool) or settings.budget < 1):
        raise ValueError(f"`budget` must be a positive number of matvecs or None, got {settings.budget!r}")
    if settings.mode not in ("sequential", "parallel"):
        raise ValueError(f"`mode` must be 'sequential' or 'parallel', got {settings.mode!r}")
    parse_dtype(settings.dtype)
    if settings.sigma is not None:
        if not is_real_number(settings.sigma) or not math.isfinite(float(settings.sigma)):
            raise ValueError(f"`sigma` must be a finite number (or empty), got {settings.sigma!r}")
        if settings.which not in SIGMA_WHICH:
            raise ValueError(f"with sigma, `which` is LM (the k eigenvalues nearest sigma), LA (the k nearest above "
                             f"it) or SA (the k nearest below), not {settings.which!r}")
    for index, config in enumerate(configs):
        if config.fn is not None:
            if not callable(config.fn):
                raise TypeError(f"run {index + 1}: `fn` must be callable, got {config.fn!r}")
            continue  # its own function validates its own parameters
        spec = get_solver(config.solver)
        if settings.sigma is not None and config.solver not in sigma_solvers(spec.kind):
            raise ValueError(f"run {index + 1} ({config.display()}): {spec.name} cannot look for the eigenvalues "
                             f"nearest sigma = {float(settings.sigma):g} (it has no shift-invert and would compare an "
                             f"end of the spectrum); runs near sigma can use {', '.join(sigma_solvers(spec.kind))}. "
                             "Change or remove this run, or clear sigma")
        config = settings.resolve(config)
        which = config.params.get("which", settings.which)
        spectral = spectral_of(config, settings)
        if spectral["lower"] is not None and spectral["upper"] is not None:
            allowed: tuple[str, ...] = ("SA", "LA")
            what = "with an interval the run returns the interval's eigenvalues, ascending: which"
        elif spectral["sigma"] is not None:
            allowed = SIGMA_WHICH
            what = "with sigma, which (LM nearest, LA nearest above, SA nearest below)"
        else:
            allowed, what = spec.which, f"{spec.name} supports which"
        if which not in allowed:
            raise ValueError(f"run {index + 1} ({config.display()}): {what} in {list(allowed)}, not {which!r}")
        names = {p.name for p in spec.params}
        for key, value in config.extras().items():
            if key not in names:
                raise TypeError(f"run {index + 1} ({config.display()}): {spec.name} has no parameter `{key}`; "
                                f"it accepts {sorted(names)}")
            spec.param(key).validate(value)
        size = n if config.problem is None else config.problem.operator.shape[0]
        if size is not None and spec.k_limit is not None and settings.k > spec.k_limit(size):
            raise ValueError(f"run {index + 1} ({config.display()}): {spec.name} needs k <= {spec.k_limit(size)} "
                             f"for n = {size:,}, got k = {settings.k}")


# --------------------------------------------------------------------------------------
# Trackers and the collector
# --------------------------------------------------------------------------------------
class MatvecBudget(NullTracker):
    """Stops a solve (``StopSolve``) at the first iteration whose ``n_matvec`` reaches ``budget``."""

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.hit = False

    def on_iteration(self, record: IterationRecord) -> None:
        if self.budget is not None and record.n_matvec >= self.budget:
            self.hit = True
            raise StopSolve(f"matvec budget of {self.budget:,} reached")


@dataclass
class RunOutcome:
    """One run of a comparison (a consistent copy for drawing; see ``ComparisonCollector.snapshot``).

    ``state``: "waiting", "running", "done", "failed" or "skipped" (the user stopped the
    comparison before it started).
    """

    index: int
    config: RunConfig
    label: str
    state: str = "waiting"
    records: list[IterationRecord] = field(default_factory=list)
    start: SolveStart | None = None
    result: Any = None
    error: str | None = None
    error_detail: str | None = None
    budget_hit: bool = False
    findings: list[Finding] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def dtype(self) -> str:
        return self.start.dtype if self.start is not None else "float64"


class _RunTracker(NullTracker):
    """Routes one run's hooks to its slot in the collector, then the budget, then the outer tracker."""

    def __init__(self, collector: "ComparisonCollector", index: int, budget: MatvecBudget,
                 outer: Tracker | None) -> None:
        self.collector, self.index, self.budget, self.outer = collector, index, budget, outer

    def on_start(self, start: SolveStart) -> None:
        self.collector._set_start(self.index, start)
        if self.outer is not None:
            self.outer.on_start(start)

    def on_iteration(self, record: IterationRecord) -> None:
        self.collector._append(self.index, record)
        if self.collector.cancelled:
            raise StopSolve(self.collector.cancel_reason or "comparison stopped")
        if self.outer is not None:
            try:
                self.outer.on_iteration(record)
            except StopSolve as stop:  # the user (or a closed page): stop every run, not just this one
                self.collector.cancel(stop.reason)
                raise
        self.budget.on_iteration(record)


class ComparisonCollector:
    """Thread-safe store of every run's records and result; the live page reads ``snapshot()``."""

    def __init__(self, configs: Sequence[RunConfig]) -> None:
        self._lock = threading.Lock()
        self._runs = [RunOutcome(index=i, config=c, label=_unique_label(configs, i)) for i, c in enumerate(configs)]
        self.cancelled = False
        self.cancel_reason: str | None = None

    def cancel(self, reason: str = "comparison stopped") -> None:
        self.cancel_reason = self.cancel_reason or reason
        self.cancelled = True

    def _set_start(self, index: int, start: SolveStart) -> None:
        with self._lock:
            self._runs[index].start = start

    def _append(self, index: int, record: IterationRecord) -> None:
        with self._lock:
            self._runs[index].records.append(record)

    def _update(self, index: int, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._runs[index], key, value)

    def snapshot(self) -> list[RunOutcome]:
        """Copies of every run (records lists copied; records themselves are immutable)."""
        with self._lock:
            return [RunOutcome(index=r.index, config=r.config, label=r.label, state=r.state, records=list(r.records),
                               start=r.start, result=r.result, error=r.error, error_detail=r.error_detail,
                               budget_hit=r.budget_hit, findings=list(r.findings), wall_s=r.wall_s)
                    for r in self._runs]

    @property
    def current(self) -> int | None:
        """Index of a running run (the first one), or None."""
        with self._lock:
            return next((r.index for r in self._runs if r.state == "running"), None)


def _short_label(configs: Sequence[RunConfig], index: int) -> str:
    """``solver(p=v, ...)`` with only the parameters that tell this run from the others of its solver.

    With a single run of a solver: its parameters that differ from the solver's defaults.
    """
    config = configs[index]
    if config.label:
        return config.label
    siblings = [c for c in configs if c.solver == config.solver and not c.label]
    names = [key for key in config.params if key != "X0"]
    if len(siblings) > 1:
        keys = [key for key in names if len({repr(c.params.get(key)) for c in siblings}) > 1]
    else:
        try:
            defaults = get_solver(config.solver).defaults()
        except ValueError:
            defaults = {}
        keys = [key for key in names if key not in defaults or config.params[key] != defaults[key]]
    shown = ", ".join(f"{key}={config.params[key]}" for key in keys if config.params[key] is not None)
    return f"{config.solver}({shown})" if shown else config.solver


def _unique_label(configs: Sequence[RunConfig], index: int) -> str:
    labels = [_short_label(configs, i) for i in range(len(configs))]
    label = labels[index]
    same = [i for i, other in enumerate(labels) if other == label]
    return label if len(same) == 1 else f"{label} #{same.index(index) + 1}"


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------
def _run_one(problem: Any, config: RunConfig, settings: CompareSettings, index: int,
             collector: ComparisonCollector, outer: Tracker | None, torch_threads: int | None,
             reference: Any = None) -> None:
    if collector.cancelled:
        collector._update(index, state="skipped", error=None)
        return
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    budget = MatvecBudget(settings.budget)
    problem = problem if config.problem is None else config.problem
    collector._update(index, state="running")
    t0 = time.perf_counter()
    try:
        dtype = parse_dtype(settings.dtype)
        operator = problem.operator.to(dtype=dtype)
        B = None if getattr(problem, "B", None) is None else problem.B.to(dtype=dtype)
        run_tracker = _RunTracker(collector, index, budget, outer)
        if config.fn is not None:
            kwargs = dict(config.params)
            result = config.fn(operator, settings.k, tracker=run_tracker, **kwargs)
        else:
            kwargs = settings.kwargs_for(config)
            if B is not None:
                kwargs["B"] = B
            result = solve(config.solver, operator, settings.k, tracker=run_tracker, **kwargs)
    except Exception as error:  # noqa: BLE001 - one failing configuration must not end the comparison
        collector._update(index, state="failed", error=friendly_error(error), error_detail=traceback.format_exc(),
                          wall_s=time.perf_counter() - t0)
        return
    records = collector.snapshot()[index].records
    findings: list[Finding] = []
    if hasattr(result, "eigenvalues"):
        exact = getattr(problem, "eigenvalues", None) if reference is None or config.problem is not None else reference
        findings = diagnose(result, records, reference=exact, dtype=dtype, tol=kwargs.get("tol"),
                            **{name: config.params.get(name) for name in _SPECTRAL})
    collector._update(index, state="done", result=result, budget_hit=budget.hit, findings=findings,
                      wall_s=time.perf_counter() - t0)


def run_comparison(problem: Any, configs: Sequence[RunConfig], settings: CompareSettings, *,
                   tracker: Tracker | None = None, collector: ComparisonCollector | None = None,
                   count: tuple[int, int] = (MIN_CONFIGS, MAX_CONFIGS), reference: Any = None) -> list[RunOutcome]:
    """Run every configuration on ``problem`` under ``settings`` and return the outcomes.

    Args:
        problem: an ``explorer.problems.Problem`` (or anything with ``operator``, and
            optionally ``B`` and ``eigenvalues``).
        configs: 2 to 5 configurations.
        settings: what the runs share (k, which, tol, budget, dtype, mode, ...).
        tracker: also receives every run's hooks (e.g. a ``SolveJob``'s tracker, whose
            ``StopSolve`` on a user Stop ends the current run and skips the rest).
        collector: where records go as they arrive (pass one to watch live).
        count: allowed number of configurations (the Learn page runs 1 to 8).
        reference: every exact eigenvalue, for the diagnosis (default: ``problem.eigenvalues``).

    Returns:
        One ``RunOutcome`` per configuration, in order. A configuration that raises
        (bad parameters for this problem, ...) is "failed" with a message; the others run.
    """
    configs = [settings.resolve(config) for config in configs]
    check_configs(configs, settings, n=problem.operator.shape[0], count=count)
    kind = getattr(problem, "kind", "eigen")
    for index, config in enumerate(configs):
        if config.fn is None and config.problem is None and get_solver(config.solver).kind != kind:
            m, n = problem.operator.shape
            able = [name for name, spec in SOLVERS.items() if spec.kind == kind]
            raise ValueError(f"run {index + 1} ({config.display()}): {config.solver} cannot solve this "
                             + (f"{m:,} x {n:,} singular-value problem" if kind == "svd" else "eigenvalue problem")
                             + f"; use {', '.join(able)}")
    collector = collector if collector is not None else ComparisonCollector(configs)
    if settings.mode == "parallel":
        with ThreadPoolExecutor(max_workers=len(configs), thread_name_prefix="compare") as pool:
            futures = [pool.submit(_run_one, problem, config, settings, i, collector, tracker, 1, reference)
                       for i, config in enumerate(configs)]
            for future in futures:
                future.result()
    else:
        for i, config in enumerate(configs):
            _run_one(problem, config, settings, i, collector, tracker, None, reference)
    return collector.snapshot()


# --------------------------------------------------------------------------------------
# Metrics and tables
# --------------------------------------------------------------------------------------
def wanted_reference(eigenvalues: Any, k: int, which: str, *, sigma: float | None = None,
                     lower: float | None = None, upper: float | None = None) -> np.ndarray | None:
    """The k exact eigenvalues a solve with ``which`` should find, in its order (None if unknown).

    The solvers' own ordering (``select_order``), so index i compares with a record's
    ``ritz_values[i]``. With ``sigma`` or an interval ``lower``, ``upper``: the eigenvalues that
    shift-invert or spectrum slicing returns, in its order
    (``explorer.solvers.shift_invert.spectral_reference``).
    """
    if eigenvalues is None:
        return None
    if sigma is not None or (lower is not None and upper is not None):
        return spectral_reference(eigenvalues, k, which=which, sigma=sigma, lower=lower, upper=upper)
    values = torch.as_tensor(np.asarray(eigenvalues.detach().cpu() if isinstance(eigenvalues, torch.Tensor)
                                        else eigenvalues, dtype=np.float64)).ravel()
    if values.numel() == 0:
        return None
    order = select_order(values, str(which).upper())[: max(0, min(int(k), values.numel()))]
    return values[order].numpy()


def is_svd(outcome: RunOutcome) -> bool:
    """True for a run whose values are singular values (an ``SVDResult``, e.g. randomized_svd)."""
    if outcome.result is not None:
        return not hasattr(outcome.result, "eigenvalues") and hasattr(outcome.result, "S")
    return outcome.config.solver == "randomized_svd"


def reference_for(outcome: RunOutcome, eigenvalues: Any, k: int, which: str) -> np.ndarray | None:
    """What a run's values should converge to, in its order.

    Eigenvalue solvers: the k wanted eigenvalues in ``which`` order (the run's own
    ``which`` when it overrides it); for a run with ``sigma`` (its own, or the comparison's,
    which :func:`run_comparison` puts among its parameters) the k nearest sigma on ``which``'s
    side, for one with an interval every eigenvalue in it. SVD solvers: the k largest
    ``|lambda|``, descending (the singular values of a symmetric matrix).
    """
    if eigenvalues is None:
        return None
    if is_svd(outcome):
        values = np.sort(np.abs(np.asarray(eigenvalues.detach().cpu() if isinstance(eigenvalues, torch.Tensor)
                                           else eigenvalues, dtype=float).ravel()))[::-1]
        return values[:k] if values.size else None
    params = outcome.config.params
    return wanted_reference(eigenvalues, k, str(params.get("which", which)), sigma=params.get("sigma"),
                            lower=params.get("lower"), upper=params.get("upper"))


_END_TEXT = {"LA": "largest", "SA": "smallest", "LM": "largest in magnitude", "BE": "largest and smallest"}
_SIDE_TEXT = {"LM": "nearest", "LA": "nearest above", "SA": "nearest below"}


def _target_text(config: RunConfig, settings: CompareSettings) -> str:
    """What one run looks for, in words ("the 4 nearest sigma = 1", "every eigenvalue in [1, 1.2)", ...)."""
    spectral = spectral_of(config, settings)
    which = str(config.params.get("which", settings.which))
    if spectral["lower"] is not None and spectral["upper"] is not None:
        return f"every eigenvalue in [{spectral['lower']:g}, {spectral['upper']:g})"
    if spectral["sigma"] is not None:
        return f"the {settings.k} {_SIDE_TEXT.get(which, 'nearest')} sigma = {spectral['sigma']:g}"
    spec = SOLVERS.get(config.solver) if config.fn is None else None
    if spec is not None and spec.kind == "svd":
        return f"the {settings.k} {'smallest' if which == 'SA' else 'largest'} singular values"
    if spec is not None and config.solver != "randomized_svd":
        return f"the {settings.k} {_END_TEXT.get(which, which)} ({which})"
    return f"the {settings.k} largest |\u03bb| (singular values)"


def target_note(configs: Sequence[RunConfig], settings: CompareSettings, eigenvalues: Any = None) -> str | None:
    """A warning when the runs look for different eigenvalues (say one near sigma, one at an end), else None.

    With ``eigenvalues`` (every exact one) the runs' wanted sets are compared, so "the 4 smallest" and
    "the 4 nearest sigma = 0" of a positive definite matrix count as the same; without, their descriptions.
    Each run is still judged against its own wanted set, but the overlays, the table and the subspace angles
    then set side by side solves of different problems.
    """
    if len(configs) < 2:
        return None
    resolved = [settings.resolve(config) for config in configs]
    texts = [_target_text(config, settings) for config in resolved]
    sets: list[np.ndarray | None] = []
    if eigenvalues is not None:
        try:
            for i, config in enumerate(resolved):
                ref = reference_for(RunOutcome(index=i, config=config, label=""), eigenvalues, settings.k,
                                    settings.which)
                sets.append(None if ref is None else np.sort(np.asarray(ref, dtype=float)))
        except (TypeError, ValueError):  # a setting the Run button will refuse with its own message
            eigenvalues, sets = None, []
    if eigenvalues is not None:
        first = sets[0]
        same = all(other is not None and first is not None and other.shape == first.shape
                   and np.allclose(other, first, rtol=1e-12, atol=0.0) for other in sets[1:])
    else:
        same = len(set(texts)) == 1
    if same:
        return None
    listed = "; ".join(f"run {i + 1} {text}" for i, text in enumerate(texts))
    return (f"These runs look for different eigenvalues ({listed}): each is judged against its own, but the "
            "curves, the table and the subspace angles then compare different problems. Set the shared sigma "
            "(or which) so that every run looks for the same ones.")


def result_values(result: Any) -> np.ndarray:
    """Eigenvalues of an EigenResult, or singular values of an SVDResult, as float64 numpy."""
    values = getattr(result, "eigenvalues", None)
    if values is None:
        values = getattr(result, "S", None)
    if values is None:
        return np.zeros(0)
    return values.detach().cpu().double().numpy().ravel()


def result_vectors(result: Any) -> np.ndarray | None:
    """(n, k) eigenvectors (or left singular vectors) as float64 numpy, or None."""
    vectors = getattr(result, "eigenvectors", None)
    if vectors is None:
        vectors = getattr(result, "U", None)
    if vectors is None or not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or vectors.shape[1] == 0:
        return None
    return vectors.detach().cpu().double().numpy()


def error_series(records: Sequence[IterationRecord], reference: np.ndarray | None, *, match: str = "index",
                 spectrum: Any = None) -> np.ndarray:
    """(T,) worst relative eigenvalue error ``max_i |theta_i - lambda_i| / |lambda_i|`` per record.

    ``reference``: the wanted exact eigenvalues in ``which`` order (see
    :func:`wanted_reference`); NaN everywhere without one. Eigenvalues at zero use
    the largest |lambda| as the scale instead. ``match="nearest"`` (a shift-invert or slicing
    run, ``explorer.plots.figures.reference_match``): each Ritz value against the nearest wanted
    eigenvalue, and with ``spectrum`` (every exact eigenvalue) each record against what its pass
    looks for (``explorer.solvers.shift_invert.pass_references``: LOBPCG's passes above and below
    sigma, a slicing run's shifts), not against the final result's eigenvalues.
    """
    out = np.full(len(records), np.nan)
    if reference is None:
        return out
    ref = np.asarray(reference, dtype=float).ravel()
    scale_floor = max(float(np.max(np.abs(ref))) if ref.size else 1.0, np.finfo(float).tiny) * 1e-12
    targets = pass_references(records, spectrum) if match == "nearest" and spectrum is not None else None
    for t, record in enumerate(records):
        theta = record.ritz_values.detach().cpu().double().numpy().ravel()
        if match == "nearest":
            row = ref if targets is None or targets[t] is None else np.asarray(targets[t], dtype=float)
            if theta.size and row.size:
                nearest = row[np.argmin(np.abs(theta[:, None] - row[None, :]), axis=1)]
                out[t] = float(np.max(np.abs(theta - nearest) / np.maximum(np.abs(nearest), scale_floor)))
            continue
        m = min(theta.size, ref.size)
        if m:
            out[t] = float(np.max(np.abs(theta[:m] - ref[:m]) / np.maximum(np.abs(ref[:m]), scale_floor)))
    return out


def first_reaching(records: Sequence[IterationRecord], k: int, *, errors: np.ndarray | None = None,
                   tol: float | None = None) -> IterationRecord | None:
    """The first record where all k pairs count as converged (solver's own test).

    With ``errors`` (from :func:`error_series`) and ``tol``: the first record whose worst
    relative eigenvalue error is <= tol instead.
    """
    for t, record in enumerate(records):
        if errors is not None and tol is not None:
            if np.isfinite(errors[t]) and errors[t] <= tol:
                return record
        elif record.n_converged >= k:
            return record
    return None


def _final_relative_residual(result: Any) -> float:
    residuals = getattr(result, "residual_norms", None)
    values = getattr(result, "eigenvalues", None)
    if residuals is None or values is None or residuals.numel() == 0:
        return math.nan
    r = residuals.detach().cpu().double().numpy()
    v = np.abs(values.detach().cpu().double().numpy())
    floor = math.sqrt(float(torch.finfo(values.dtype).eps)) * max(float(v.max()), np.finfo(float).tiny)
    return float(np.max(r / np.maximum(v, floor)))


def summary_frame(outcomes: Sequence[RunOutcome], settings: CompareSettings, eigenvalues: Any = None) -> pd.DataFrame:
    """The final table: one row per run.

    Columns: run, status, converged ("c/k"), matvecs, matvecs to tol (first iteration with
    all k pairs converged by the solver's residual test), matvecs to error <= tol (with a
    reference: first iteration whose worst relative eigenvalue error is <= tol), time (s),
    time to tol (s), iterations, max rel. error (final, against the reference), max rel.
    residual (final, true residual / |theta|), orthogonality loss (last record), findings.
    """
    rows = []
    for outcome in outcomes:
        result = outcome.result
        spectral = spectral_of(outcome.config, settings)
        interval = spectral["lower"] is not None and spectral["upper"] is not None
        # an interval decides the count (k only caps it)
        k = int(result.k) if interval and result is not None and hasattr(result, "k") else settings.k
        tol = float(outcome.config.params.get("tol", settings.tol))
        ref = reference_for(outcome, eigenvalues, settings.k, settings.which)
        if interval and ref is not None and result is None:
            k = ref.size
        match = "nearest" if any(v is not None for v in spectral.values()) else "index"
        errors = error_series(outcome.records, ref, match=match, spectrum=eigenvalues)
        # a run in passes (LOBPCG above and below sigma, a slicing run's shifts) is done in its last pass
        start = last_pass_start(outcome.records) if match == "nearest" else 0
        later = outcome.records[start:]
        reach = first_reaching(later, k)
        reach_err = first_reaching(later, k, errors=errors[start:], tol=tol) if ref is not None else None
        last = outcome.records[-1] if outcome.records else None
        status = outcome.state if result is None else result.status.value
        if outcome.budget_hit:
            status = "budget reached"
        final_error = math.nan
        if result is not None and ref is not None:
            values = result_values(result)
            m = min(values.size, ref.size)
            if m and match == "nearest":  # ties in distance to sigma may come in either order
                nearest = ref[np.argmin(np.abs(values[:, None] - ref[None, :]), axis=1)]
                scale = np.maximum(np.abs(nearest), max(float(np.max(np.abs(ref))), 1e-300) * 1e-12)
                final_error = float(np.max(np.abs(values - nearest) / scale))
            elif m:
                scale = np.maximum(np.abs(ref[:m]), max(float(np.max(np.abs(ref))), 1e-300) * 1e-12)
                final_error = float(np.max(np.abs(values[:m] - ref[:m]) / scale))
        converged = getattr(result, "converged", None)
        rows.append({
            "run": outcome.label,
            "status": status if outcome.error is None else f"failed: {outcome.error}",
            "converged": "" if converged is None else f"{int(converged.sum())}/{k}",
            "matvecs": None if result is None else int(result.n_matvec),
            "matvecs to tol": None if reach is None else int(reach.n_matvec),
            "matvecs to error <= tol": None if reach_err is None else int(reach_err.n_matvec),
            "time (s)": None if result is None else float(result.elapsed_s),
            "time to tol (s)": None if reach is None else float(reach.elapsed_s),
            "iterations": None if result is None else int(result.n_iter),
            "max rel. error": final_error,
            "max rel. residual": math.nan if result is None else _final_relative_residual(result),
            "orthogonality loss": math.nan if last is None or last.orthogonality_loss is None
            else float(last.orthogonality_loss),
            "findings": ", ".join(f.rule for f in outcome.findings if f.severity != "info"),
        })
    return pd.DataFrame(rows)


def principal_angles(V1: np.ndarray, V2: np.ndarray) -> np.ndarray:
    """Principal angles (radians, descending) between span(V1) and span(V2).

    ``scipy.linalg.subspace_angles`` orthonormalizes both bases and combines the cosine
    (SVD of ``Q1^T Q2``) with the sine formula, so small angles stay accurate (Bjorck &
    Golub, Math. Comp. 27 (1973) 579-594; Knyazev & Argentati, SIAM J. Sci. Comput. 23
    (2002) 2008-2040). Zero columns are dropped first.
    """
    def clean(V: np.ndarray) -> np.ndarray:
        V = np.asarray(V, dtype=float)
        keep = np.linalg.norm(V, axis=0) > 0
        return V[:, keep]

    A, B = clean(V1), clean(V2)
    if A.shape[1] == 0 or B.shape[1] == 0:
        return np.zeros(0)
    return scipy.linalg.subspace_angles(A, B)


def angle_frame(outcomes: Sequence[RunOutcome], *, degrees: bool = True) -> pd.DataFrame:
    """Largest principal angle between every two runs' eigenvector subspaces (a symmetric table).

    Diagonal entries are 0; runs without vectors (failed, or vectors of another size)
    give NaN. An angle near 0 means both found the same invariant subspace, even when
    their individual vectors differ inside a multiple eigenvalue's eigenspace.
    """
    labels = [o.label for o in outcomes]
    vectors = [None if o.result is None else result_vectors(o.result) for o in outcomes]
    table = np.full((len(outcomes), len(outcomes)), np.nan)
    for i, Vi in enumerate(vectors):
        for j, Vj in enumerate(vectors):
            if Vi is None or Vj is None or Vi.shape[0] != Vj.shape[0]:
                continue
            if i == j:
                table[i, j] = 0.0
                continue
            angles = principal_angles(Vi, Vj)
            if angles.size:
                largest = float(np.max(angles))
                table[i, j] = math.degrees(largest) if degrees else largest
    return pd.DataFrame(table, index=labels, columns=labels)
