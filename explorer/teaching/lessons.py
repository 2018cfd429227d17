"""Lessons for the Learn page: text, a problem chosen to show one point, parameters, and theory curves.

Pure: no Streamlit, no plotting library. A :class:`Lesson` declares its text and its
parameters (``ParamSpec`` s, so the page builds widgets with the same helper as the
solver forms). ``lesson.build(values)`` returns a :class:`LessonSetup`: the problem, the
solver runs (``explorer.analysis.compare.RunConfig`` s, executed by the same
``explorer.analysis.compare.run_comparison`` as the Compare page, so each run streams
``IterationRecord`` s to the same tracker machinery), and ``charts(outcomes)``, which turns
the runs so far (live, partial or finished) into :class:`Chart` s of measured and theory
:class:`Series`. ``notes(outcomes)`` gives a few sentences comparing measured and
predicted rates once the runs have ended.

Every theory curve comes from :mod:`explorer.analysis.theory` with the exact spectrum of the
lesson's problem and the exact start vector (the lessons pass ``X0`` so the angle of
the start with the eigenvectors is known). Demos are small (n of a few hundred; one
lesson's runs take a second or two on one core).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch

from explorer import problems
from explorer.analysis import theory
from explorer.analysis.compare import CompareSettings, ComparisonCollector, RunConfig, RunOutcome, run_comparison
from explorer.tracking import Tracker
from explorer.solvers.registry import ParamSpec

__all__ = ["Series", "Chart", "LessonSetup", "Lesson", "LESSONS", "get_lesson", "run_lesson", "staircase_points"]

#: How many runs one lesson may make (the randomized-SVD lesson makes seeds x (q + 1) tiny runs).
LESSON_RUNS = (1, 40)

Role = Literal["measured", "theory", "reference"]


@dataclass(frozen=True)
class Series:
    """One curve or point set of a chart.

    Attributes:
        name: legend label.
        x, y: the data (numpy float arrays of equal length).
        role: "measured" (solid line or dots), "theory" (dashed line) or "reference"
            (faint line, e.g. exact eigenvalues).
        mode: "lines", "markers" or "lines+markers".
        color: index into the app palette (runs keep their color across charts), or None.
        highlight: optional bool per point (e.g. ghost Ritz values), drawn in red.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    role: Role = "measured"
    mode: str = "lines"
    color: int | None = None
    highlight: np.ndarray | None = None


@dataclass(frozen=True)
class Chart:
    """A chart: axes and series. ``log_y`` / ``log_x`` ask for logarithmic axes."""

    key: str
    title: str
    x_label: str
    y_label: str
    series: tuple[Series, ...]
    log_y: bool = True
    log_x: bool = False


@dataclass(frozen=True)
class LessonSetup:
    """What one parameter choice of a lesson runs and draws.

    Attributes:
        problem: the (shared) problem.
        configs: the solver runs, in order.
        settings: what they share (k, which, tol, max_iter, seed; no matvec budget).
        charts: ``charts(outcomes) -> list[Chart]`` for the runs so far.
        notes: ``notes(outcomes) -> list[str]`` measured-versus-theory sentences.
        facts: numbers known before running (rates, bounds), shown next to the text.
    """

    problem: Any
    configs: tuple[RunConfig, ...]
    settings: CompareSettings
    charts: Callable[[Sequence[RunOutcome]], list[Chart]]
    notes: Callable[[Sequence[RunOutcome]], list[str]]
    facts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lesson:
    """One section of the Learn page."""

    key: str
    title: str
    text: str  # markdown: the explanation
    params: tuple[ParamSpec, ...]
    build: Callable[[Mapping[str, Any]], LessonSetup]
    references: tuple[str, ...] = ()
    solvers: tuple[str, ...] = ()  # registry names the lesson needs

    def defaults(self) -> dict[str, Any]:
        return {spec.name: spec.default for spec in self.params}

    def setup(self, values: Mapping[str, Any] | None = None) -> LessonSetup:
        """Validate ``values`` (defaults for the missing ones) and build the demo."""
        merged = self.defaults()
        for key, value in (values or {}).items():
            spec = next((p for p in self.params if p.name == key), None)
            if spec is None:
                raise TypeError(f"lesson {self.key!r} has no parameter `{key}`; it has {[p.name for p in self.params]}")
            merged[key] = spec.validate(value)
        return self.build(merged)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def _start_vector(n: int, seed: int) -> torch.Tensor:
    """A Gaussian start (local generator): known to the theory through its angles."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(n, generator=generator, dtype=torch.float64)


def _iterations(records: Sequence[Any]) -> np.ndarray:
    return np.asarray([r.iteration for r in records], dtype=float)


def _ritz(records: Sequence[Any], column: int = 0) -> np.ndarray:
    out = np.full(len(records), np.nan)
    for t, record in enumerate(records):
        if record.ritz_values.numel() > column:
            out[t] = float(record.ritz_values[column])
    return out


def _positive(values: np.ndarray, floor: float = 1e-18) -> np.ndarray:
    out = np.asarray(values, dtype=float).copy()
    with np.errstate(invalid="ignore"):
        out[out <= 0] = floor
    return out


def staircase_points(records: Sequence[Any], *, exact: np.ndarray | None = None, window: tuple[float, float] | None = None,
                     max_points: int = 6000, ghost_tol: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, ghost) for a Ritz-value "staircase": every Ritz value of every iteration as a dot.

    Uses ``record.all_ritz_values`` (falls back to ``ritz_values``). ``window`` keeps only
    values inside [lo, hi]; iterations are thinned evenly to stay under ``max_points``.
    With ``exact`` and ``ghost_tol``: a dot is a ghost when another Ritz value of the same
    iteration is within ``ghost_tol`` of the same simple exact eigenvalue (a second
    converged copy, Paige 1976).
    """
    if not records:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    sizes = [int((r.all_ritz_values if r.all_ritz_values is not None else r.ritz_values).numel()) for r in records]
    total = max(sum(sizes), 1)
    stride = max(1, math.ceil(total / max_points))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    gs: list[np.ndarray] = []
    picked = list(range(0, len(records), stride))
    if picked[-1] != len(records) - 1:
        picked.append(len(records) - 1)
    for t in picked:
        record = records[t]
        values = (record.all_ritz_values if record.all_ritz_values is not None else record.ritz_values)
        values = values.detach().cpu().double().numpy().ravel()
        if window is not None:
            values = values[(values >= window[0]) & (values <= window[1])]
        ghost = np.zeros(values.size, dtype=bool)
        if exact is not None and ghost_tol is not None and values.size:
            nearest = np.abs(values[:, None] - exact[None, :])
            index = np.argmin(nearest, axis=1)
            close = nearest[np.arange(values.size), index] <= ghost_tol
            for j in np.unique(index[close]):
                members = np.flatnonzero(close & (index == j))
                multiplicity = int(np.sum(np.abs(exact - exact[j]) <= ghost_tol))
                if members.size > multiplicity:
                    ghost[members[multiplicity:]] = True
        xs.append(np.full(values.size, float(record.iteration)))
        ys.append(values)
        gs.append(ghost)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def _strakos(n: int, rho: float, low: float = 0.1, high: float = 100.0) -> np.ndarray:
    """Strakos' spectrum ``lambda_i = l1 + (i-1)/(n-1) (ln - l1) rho^(n-i)``: dense at the bottom, sparse on top.

    The classic test for loss of orthogonality in Lanczos (Strakos 1991; Greenbaum &
    Strakos, SIAM J. Matrix Anal. Appl. 13 (1992) 121-137).
    """
    i = np.arange(1, n + 1, dtype=float)
    return low + (i - 1) / (n - 1) * (high - low) * rho ** (n - i)


# --------------------------------------------------------------------------------------
# 1. Power iteration
# --------------------------------------------------------------------------------------
_POWER_TEXT = r"""
Power iteration multiplies a vector by $A$ again and again. Write the start as a sum of
eigenvectors: after $t$ steps the part along $u_i$ has grown by $\lambda_i^t$, so everything
but the dominant direction shrinks like $|\lambda_2/\lambda_1|^t$ relative to it. For a
symmetric matrix the Rayleigh-quotient error is the *square* of that
(Golub & Van Loan, Thm 8.2.1):

$$|\theta_t - \lambda_1| \le \max_i |\lambda_1 - \lambda_i|\,\tan^2\theta_0\,\left|\frac{\lambda_2}{\lambda_1}\right|^{2t}.$$

Move the gap ratio towards 1 and watch the slope flatten. **Momentum** (heavy ball,
$x_{t+1} = A x_t - \beta x_{t-1}$) turns the iterate into a Chebyshev-like polynomial in $A$;
with $\beta = \lambda_2^2/4$ the rate improves from $\lambda_2/\lambda_1$ to
$\lambda_2 / (\lambda_1 + \sqrt{\lambda_1^2 - \lambda_2^2})$ (Xu et al. 2018). Our solver
takes a guess $r$ of $\lambda_2/\lambda_1$ and uses $\beta_t = (r\,\theta_t)^2/4$ with its
running Rayleigh quotient $\theta_t$; the dashed bound follows that same schedule. The matrix is
diagonal, so the angle $\theta_0$ between the random start and the top eigenvector is known
exactly: the dashed lines are bounds, not fits.
"""


def _power_build(values: Mapping[str, Any]) -> LessonSetup:
    n, ratio, seed = int(values["n"]), float(values["gap_ratio"]), int(values["seed"])
    # The solver's momentum r is a guess of lambda_2 / lambda_1; it uses beta_t = (r theta_t)^2 / 4.
    r = min(0.999, float(values["momentum_factor"]) * ratio)
    # lambda_1 = 1, lambda_2 = ratio, the rest spread below 0.8 * ratio.
    spectrum = np.concatenate([[1.0, ratio], np.linspace(0.8 * ratio, 0.0, n - 2)])
    problem = problems.diagonal(spectrum)
    x0 = _start_vector(n, seed)
    tan0 = float(theory.start_tangents(x0)[0])
    max_iter = int(values["max_iter"])
    configs = (RunConfig("power_iteration", {"momentum": 0.0, "X0": x0}, label="plain"),
               RunConfig("power_iteration", {"momentum": r, "X0": x0}, label=f"momentum r = {r:.3g}"))
    settings = CompareSettings(k=1, which="LM", tol=1e-12, max_iter=max_iter, budget=None, seed=seed)
    spread = float(np.max(np.abs(1.0 - spectrum)))
    beta_limit = (r * 1.0) ** 2 / 4.0  # beta once theta_t has reached lambda_1 = 1

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        series: list[Series] = []
        t_max = 1
        schedule = np.asarray([beta_limit])
        for outcome in outcomes:
            if not outcome.records:
                continue
            its = _iterations(outcome.records)
            theta = _ritz(outcome.records)
            t_max = max(t_max, int(its[-1]))
            series.append(Series(f"{outcome.label}: measured |theta - lambda_1|", its, _positive(np.abs(theta - 1.0)),
                                 color=outcome.index))
            if outcome.index == 1:  # the solver's beta schedule, from its own Rayleigh quotients
                schedule = np.concatenate([(r * theta) ** 2 / 4.0, [beta_limit]])
        # Record t holds the Rayleigh quotient of x_(t-1): t - 1 products by A (or p_(t-1)(A)).
        t = np.arange(1, t_max + 1, dtype=float)
        plain = theory.power_rayleigh_bound(spectrum, tan0, t - 1)
        accelerated = spread * tan0 ** 2 * theory.momentum_polynomial_ratio(spectrum, schedule, t_max - 1) ** 2
        floor = 1e-17
        series.append(Series(f"bound (GVL 8.2.1), rate {ratio:.3g}^2t", t, np.maximum(plain, floor), role="theory",
                             color=0))
        series.append(Series(f"bound with this momentum, rate {theory.momentum_rate(1.0, ratio, beta_limit):.3g}^2t",
                             t, np.maximum(accelerated, floor), role="theory", color=1))
        return [Chart("power_error", "Eigenvalue error against iterations", "iteration t", "|theta_t - lambda_1|",
                      tuple(series))]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        for outcome in outcomes:
            if outcome.result is None or len(outcome.records) < 6:
                continue
            err = np.abs(_ritz(outcome.records) - 1.0)
            its = _iterations(outcome.records)
            mask = (err > 1e-13) & np.isfinite(err)
            if mask.sum() >= 4:
                tail = max(4, int(mask.sum()) // 2)
                slope = np.polyfit(its[mask][-tail:], np.log(err[mask][-tail:]), 1)[0]
                out.append(f"{outcome.label}: measured error rate per step {math.exp(slope):.4f} "
                           f"(theory: {ratio ** 2:.4f} plain, {theory.momentum_rate(1.0, ratio, beta_limit) ** 2:.4f} "
                           f"with this momentum); {outcome.result.status.value} after {outcome.result.n_matvec} "
                           "matvecs.")
        return out

    facts = {"lambda_2 / lambda_1": f"{ratio:.4g}", "tan theta_0": f"{tan0:.3g}",
             "momentum r (beta = (r theta)^2/4)": f"{r:.4g}",
             "rate plain / momentum": f"{ratio:.4g} / {theory.momentum_rate(1.0, ratio, beta_limit):.4g}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


POWER = Lesson(
    key="power",
    title="Power iteration: the gap ratio sets the speed",
    text=_POWER_TEXT,
    params=(
        ParamSpec("gap_ratio", "float", 0.9, "lambda_2 / lambda_1 of the test matrix.", minimum=0.3, maximum=0.995),
        ParamSpec("momentum_factor", "float", 1.0, "The solver's momentum r is this factor times the true "
                  "lambda_2 / lambda_1 (1 = the optimal guess, 0 = none; above 1 the bulk starts to oscillate).",
                  minimum=0.0, maximum=1.2),
        ParamSpec("n", "int", 200, "Matrix size (diagonal).", minimum=10, maximum=5000),
        ParamSpec("max_iter", "int", 400, "Iterations per run.", minimum=10, maximum=5000),
        ParamSpec("seed", "int", 0, "Seed of the random start vector.", minimum=0),
    ),
    build=_power_build,
    references=("Golub & Van Loan, Matrix Computations, 4th ed., Thm 8.2.1",
                "Xu, He, De Sa, Mitliagkas, Re, Accelerated stochastic power iteration, AISTATS 2018"),
    solvers=("power_iteration",),
)


# --------------------------------------------------------------------------------------
# 2. Lanczos: KPS bound and the staircase
# --------------------------------------------------------------------------------------
_LANCZOS_TEXT = r"""
Lanczos builds the Krylov space $\mathcal{K}_m = \mathrm{span}\{v, Av, \dots, A^{m-1}v\}$ and
takes the eigenvalues of the projected tridiagonal matrix $T_m$ (the Ritz values). Among all
polynomials of degree $m-1$ it implicitly picks the best one, so it is never slower than
$m-1$ power steps and usually far faster. The **Kaniel-Paige-Saad bound** (Saad, Thm 6.4)
makes that precise with a Chebyshev polynomial $T_j$:

$$0 \le \lambda_i - \theta_i^{(m)} \le (\lambda_1 - \lambda_n)\left(\frac{\kappa_i \tan\theta(v, u_i)}{T_{m-i}(\gamma_i)}\right)^2, \qquad \gamma_i = 1 + 2\,\frac{\lambda_i - \lambda_{i+1}}{\lambda_{i+1} - \lambda_n}.$$

Here $\kappa_1 = 1$ and $\kappa_i = \prod_{j<i} \frac{\theta_j - \lambda_n}{\theta_j - \lambda_i}$ (from the Ritz values); the
bounds for $i = 2, 3$ are drawn once they say something (below $\lambda_1 - \lambda_n$).

$T_j(\gamma)$ grows like $(\gamma + \sqrt{\gamma^2-1})^j$, so a relative gap $g$ gives a rate
of about $1 - 2\sqrt{g}$ per step where power iteration has $1 - g$. The **staircase** shows
every Ritz value at every step: the extreme ones settle first, one after the other, while the
interior ones keep moving. One start vector and full re-orthogonalization keep this run close
to exact arithmetic, where the theorem holds.
"""


def _lanczos_build(values: Mapping[str, Any]) -> LessonSetup:
    n, gap, seed, steps = int(values["n"]), float(values["gap"]), int(values["seed"]), int(values["steps"])
    k = 3
    bulk = np.linspace(1.0, 0.0, n - 1)
    spectrum = np.concatenate([[1.0 + gap], bulk])  # lambda_1 = 1 + gap, then [0, 1] evenly
    problem = problems.diagonal(spectrum)
    x0 = _start_vector(n, seed)
    tangents = theory.start_tangents(x0)  # eigenvector of spectrum[j] is e_j
    descending_index = np.argsort(-spectrum, kind="stable")
    tan_i = [float(tangents[descending_index[i]]) for i in range(k)]
    # One start vector (block_size 1) and a basis that never restarts: the setting of the theorem.
    configs = (RunConfig("lanczos", {"reorthogonalization": "full", "max_basis": max(steps + 5, 20),
                                     "block_size": 1, "X0": x0},
                         label="Lanczos (full re-orthogonalization)"),)
    settings = CompareSettings(k=k, which="LA", tol=1e-13, max_iter=steps, budget=None, seed=seed)
    exact = np.sort(spectrum)[::-1]

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        outcome = outcomes[0]
        records = outcome.records
        series: list[Series] = []
        stairs: list[Series] = []
        if records:
            its = _iterations(records)
            ms = np.asarray([int((r.all_ritz_values if r.all_ritz_values is not None else r.ritz_values).numel())
                             for r in records])
            ritz_all = [r.all_ritz_values if r.all_ritz_values is not None else r.ritz_values for r in records]
            for i in range(k):
                err = exact[i] - _ritz(records, i)
                series.append(Series(f"measured lambda_{i + 1} - theta_{i + 1}", its, _positive(np.abs(err)), color=i))
                bound = theory.lanczos_bound_curve(spectrum, tan_i[i], ms, i=i + 1, which="LA",
                                                   ritz_values=ritz_all if i > 0 else None)
                # Above lambda_1 - lambda_n the bound says nothing: leave those steps out.
                informative = np.where(bound < exact[0] - exact[-1], bound, np.nan)
                series.append(Series(f"KPS bound i = {i + 1}", its, informative, role="theory", color=i))
            x, y, _ = staircase_points(records, max_points=8000)
            stairs.append(Series("Ritz values", x, y, mode="markers", color=0))
            top = exact[: min(6, exact.size)]
            x_end = float(its[-1])
            for j, value in enumerate(top):
                stairs.append(Series("exact eigenvalues" if j == 0 else "", np.asarray([0.0, x_end]),
                                     np.asarray([value, value]), role="reference"))
        return [
            Chart("lanczos_error", "Ritz-value error against the Kaniel-Paige-Saad bound", "Lanczos step m",
                  "lambda_i - theta_i", tuple(series)),
            Chart("lanczos_staircase", "Ritz values at every step (the staircase)", "Lanczos step m", "Ritz value",
                  tuple(stairs), log_y=False),
        ]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        outcome = outcomes[0]
        if outcome.result is None:
            return []
        records = outcome.records
        violations = 0
        for record in records:
            m = int((record.all_ritz_values if record.all_ritz_values is not None else record.ritz_values).numel())
            bound = theory.lanczos_bound_curve(spectrum, tan_i[0], [m])[0]
            err = exact[0] - float(record.ritz_values[0])
            if err > bound + 1e3 * np.finfo(float).eps * exact[0]:
                violations += 1
        gamma = theory.kps_gamma(exact, 1)
        rate = 1.0 / (gamma + math.sqrt(gamma * gamma - 1.0))
        return [f"gamma_1 = {gamma:.4f}: the bound shrinks by {rate ** 2:.4f} per step; power iteration on the "
                f"same matrix would shrink by {(exact[1] / exact[0]) ** 2:.4f}.",
                f"{len(records)} steps, {outcome.result.n_matvec} matvecs; the measured error of theta_1 exceeded "
                f"the bound at {violations} step(s) (rounding level excepted)."]

    gamma1 = theory.kps_gamma(exact, 1)
    facts = {"relative gap (lambda_1 - lambda_2)/(lambda_2 - lambda_n)": f"{gap:.3g}", "gamma_1": f"{gamma1:.4f}",
             "tan theta(v, u_1)": f"{tan_i[0]:.3g}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


LANCZOS = Lesson(
    key="lanczos",
    title="Lanczos: Chebyshev speed, and the extreme eigenvalues first",
    text=_LANCZOS_TEXT,
    params=(
        ParamSpec("gap", "float", 0.05, "lambda_1 - lambda_2 (the rest of the spectrum fills [0, 1]).",
                  minimum=1e-4, maximum=1.0, log_scale=True),
        ParamSpec("n", "int", 400, "Matrix size (diagonal).", minimum=20, maximum=5000),
        ParamSpec("steps", "int", 80, "Lanczos steps (Krylov dimension m).", minimum=5, maximum=400),
        ParamSpec("seed", "int", 0, "Seed of the random start vector.", minimum=0),
    ),
    build=_lanczos_build,
    references=("Saad, Numerical Methods for Large Eigenvalue Problems, 2nd ed., SIAM 2011, Thm 6.4",
                "Golub & Van Loan, Matrix Computations, 4th ed., 10.1.5 (Kaniel-Paige theory)"),
    solvers=("lanczos",),
)


# --------------------------------------------------------------------------------------
# 3. Loss of orthogonality and ghosts
# --------------------------------------------------------------------------------------
_GHOST_TEXT = r"""
In exact arithmetic the Lanczos vectors are orthonormal by construction. In floating point
they are not, and **Paige (1976)** explained exactly how: the new vector $q_{m+1}$ leans
towards a Ritz vector $y_i$ by about $\varepsilon\|A\| / |\beta_m s_{mi}|$, and
$|\beta_m s_{mi}|$ is that Ritz pair's residual. So orthogonality is lost *precisely when a
Ritz value converges*, and the lost direction is that converged eigenvector. The method then
finds it again: a **ghost**, a second copy of an eigenvalue of multiplicity one.

The matrix is Strakos' classic test: eigenvalues crowded at the bottom and spread out at the
top, so the top ones converge fast. The dashed line is Paige's prediction
$\varepsilon\|A\| / \min_i(\text{residual estimate})$. In the staircases (left: no
re-orthogonalization, right: full) red crosses are ghost copies.
"""


def _ghost_build(values: Mapping[str, Any]) -> LessonSetup:
    n, rho, steps, seed = int(values["n"]), float(values["rho"]), int(values["steps"]), int(values["seed"])
    k = 4
    spectrum = _strakos(n, rho)
    problem = problems.diagonal(spectrum)
    x0 = _start_vector(n, seed)
    basis = max(steps + 5, 20)
    configs = (RunConfig("lanczos", {"reorthogonalization": "none", "max_basis": basis, "block_size": 1, "X0": x0},
                         label="no re-orthogonalization"),
               RunConfig("lanczos", {"reorthogonalization": "full", "max_basis": basis, "block_size": 1, "X0": x0},
                         label="full re-orthogonalization"))
    # tol below what float64 can certify on purpose: the runs go on for `steps` iterations.
    settings = CompareSettings(k=k, which="LA", tol=1e-18, max_iter=steps, budget=None, seed=seed)
    norm_a = float(np.max(np.abs(spectrum)))
    eps = float(np.finfo(np.float64).eps)
    exact = np.sort(spectrum)
    ghost_tol = 1e-8 * norm_a

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        loss: list[Series] = []
        copies: list[Series] = []
        stairs: list[Chart] = []
        for outcome in outcomes:
            records = outcome.records
            if not records:
                continue
            its = _iterations(records)
            ortho = np.asarray([np.nan if r.orthogonality_loss is None else r.orthogonality_loss for r in records])
            loss.append(Series(f"{outcome.label}: max|Q^T Q - I|", its, _positive(ortho), color=outcome.index))
            if outcome.index == 0:
                paige = np.asarray([theory.paige_orthogonality_level(r.residual_norms, norm_a, eps) for r in records])
                loss.append(Series("Paige: eps ||A|| / min residual estimate", its, paige, role="theory",
                                   color=outcome.index))
            n_copies = []
            for record in records:
                allr = record.all_ritz_values if record.all_ritz_values is not None else record.ritz_values
                n_copies.append(int(np.sum(np.abs(allr.double().numpy() - exact[-1]) <= ghost_tol)))
            copies.append(Series(f"{outcome.label}: Ritz values at lambda_1", its, np.asarray(n_copies, float),
                                 mode="lines", color=outcome.index))
            window = (float(exact[-8]) - 0.05 * norm_a, float(exact[-1]) + 0.05 * norm_a) if n >= 8 else None
            x, y, ghost = staircase_points(records, exact=exact, window=window, ghost_tol=ghost_tol)
            top_lines = [Series("exact eigenvalues" if j == 0 else "", np.asarray([0.0, float(its[-1])]),
                                np.asarray([v, v]), role="reference") for j, v in enumerate(exact[-6:][::-1])]
            stairs.append(Chart(f"ghost_staircase_{outcome.index}", f"Top Ritz values: {outcome.label}",
                                "Lanczos step", "Ritz value",
                                (Series("Ritz values (red: ghost copy)", x, y, mode="markers", color=outcome.index,
                                        highlight=ghost), *top_lines), log_y=False))
        return [Chart("ghost_loss", "Orthogonality of the Lanczos basis", "Lanczos step", "max|Q^T Q - I|",
                      tuple(loss)),
                Chart("ghost_copies", "Copies of the largest eigenvalue among the Ritz values", "Lanczos step",
                      "number of copies", tuple(copies), log_y=False),
                *stairs]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        for outcome in outcomes:
            if not outcome.records:
                continue
            last = outcome.records[-1]
            allr = last.all_ritz_values if last.all_ritz_values is not None else last.ritz_values
            copies = int(np.sum(np.abs(allr.double().numpy() - exact[-1]) <= ghost_tol))
            losses = [r.orthogonality_loss for r in outcome.records if r.orthogonality_loss is not None]
            flagged = sum(1 for r in outcome.records if r.ghost_mask is not None and bool(r.ghost_mask.any()))
            out.append(f"{outcome.label}: final orthogonality loss {losses[-1]:.1e}, {copies} Ritz value(s) at "
                       f"lambda_1 = {exact[-1]:.6g} after {len(outcome.records)} steps; the solver flagged ghosts in "
                       f"{flagged} step(s)." if losses else f"{outcome.label}: no orthogonality data.")
        return out

    facts = {"n": str(n), "rho": f"{rho:g}", "lambda_1 / lambda_2": f"{exact[-1]:.4g} / {exact[-2]:.4g}",
             "eps ||A||": f"{eps * norm_a:.2e}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


GHOSTS = Lesson(
    key="ghosts",
    title="Loss of orthogonality and ghost eigenvalues (Paige 1976)",
    text=_GHOST_TEXT,
    params=(
        ParamSpec("rho", "float", 0.9, "Strakos parameter: smaller = top eigenvalues more isolated.",
                  minimum=0.5, maximum=0.99),
        ParamSpec("n", "int", 100, "Matrix size.", minimum=20, maximum=2000),
        ParamSpec("steps", "int", 90, "Lanczos steps (plain Lanczos may even run past n: its vectors are no "
                  "longer independent).", minimum=10, maximum=400),
        ParamSpec("seed", "int", 0, "Seed of the random start vector.", minimum=0),
    ),
    build=_ghost_build,
    references=("C. C. Paige, J. Inst. Math. Appl. 18 (1976) 373-381; Linear Algebra Appl. 34 (1980) 235-258",
                "B. N. Parlett, The Symmetric Eigenvalue Problem, ch. 13",
                "Z. Strakos, Linear Algebra Appl. 154-156 (1991) 535-549; Greenbaum & Strakos, SIMAX 13 (1992)"),
    solvers=("lanczos",),
)


# --------------------------------------------------------------------------------------
# 4. LOBPCG: block size and preconditioning
# --------------------------------------------------------------------------------------
_LOBPCG_TEXT = r"""
LOBPCG improves a block of vectors $X$ by Rayleigh-Ritz on $\mathrm{span}\{X, TR, P\}$: the
current vectors, their **preconditioned** residuals and the previous update. Two knobs:

* **block size**: extra "guard" columns beyond $k$ widen the gap that governs the $k$-th pair
  (roughly $\lambda_k$ against $\lambda_{b+1}$ instead of $\lambda_{k+1}$), at one more matvec
  per column and iteration, and let the block see every copy of a repeated eigenvalue;
* **preconditioner** $T \approx A^{-1}$: the per-step guarantee of Knyazev & Neymeyr for the
  smallest eigenvalue, $\Delta' \le \sigma^2 \Delta$ with
  $\Delta = \frac{\lambda - \lambda_1}{\lambda_2 - \lambda}$,
  $\sigma = \gamma + (1-\gamma)\lambda_1/\lambda_2$ and
  $\gamma = \frac{\kappa(TA) - 1}{\kappa(TA) + 1}$, improves as $TA$ gets better conditioned.
  The dashed curves are that guarantee for the actual $\kappa(TA)$ (computed densely for this
  small problem); LOBPCG is usually much faster than it.

The Dirichlet Laplacian has a constant diagonal, so Jacobi ($T = D^{-1}$) changes nothing:
a lesson in itself. A graph Laplacian has varying degrees, and there Jacobi helps (it is
singular, so no guarantee is drawn).
"""


def _lobpcg_problem(name: str, size: int, seed: int) -> Any:
    if name == "laplacian_2d":
        return problems.laplacian_2d(size)
    return problems.random_graph_laplacian(size * size, p=min(1.0, 8.0 / (size * size)), seed=seed)


def _condition_tA(problem: Any, jacobi: bool) -> float | None:
    """kappa(T A) for T = I or T = D^-1 of an SPD matrix (dense, small n only); None if singular or large."""
    n = problem.operator.shape[0]
    if n > 2500:
        return None
    A = problem.operator.to_dense().cpu().double()
    if jacobi:
        d = torch.diagonal(A).abs().clamp_min(np.finfo(float).tiny).rsqrt()
        A = d.unsqueeze(1) * A * d.unsqueeze(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this thread only; small dense work, and the box may be shared (LIVE.md 2.4)
    try:
        values = torch.linalg.eigvalsh(A)
    finally:
        torch.set_num_threads(threads)
    positive = values[values > 1e-10 * float(values.abs().max())]
    if positive.numel() < values.numel() or positive.numel() == 0:
        return None  # singular: the bound needs an SPD matrix
    return float(positive.max() / positive.min())


def _lobpcg_build(values: Mapping[str, Any]) -> LessonSetup:
    name, size, block, seed = str(values["problem"]), int(values["grid"]), int(values["block_size"]), int(values["seed"])
    k = 3
    block = max(block, k)
    problem = _lobpcg_problem(name, size, seed)
    max_iter = int(values["max_iter"])
    configs = (RunConfig("lobpcg", {"block_size": k, "preconditioner": "none"}, label=f"block {k}, no preconditioner"),
               RunConfig("lobpcg", {"block_size": block, "preconditioner": "none"},
                         label=f"block {block}, no preconditioner"),
               RunConfig("lobpcg", {"block_size": block, "preconditioner": "jacobi"}, label=f"block {block}, Jacobi"))
    settings = CompareSettings(k=k, which="SA", tol=1e-8, max_iter=max_iter, budget=None, seed=seed)
    exact = problem.eigenvalues.double().numpy()
    norm_a = float(np.max(np.abs(exact)))
    kappas = {False: _condition_tA(problem, False), True: _condition_tA(problem, True)}
    lam1, lam2 = float(exact[0]), float(exact[1]) if exact.size > 1 else math.inf

    def sigma_for(jacobi: bool) -> float | None:
        kappa = kappas[jacobi]
        if kappa is None or not 0 < lam1 < lam2:
            return None
        return theory.pinvit_sigma(lam1, lam2, theory.optimal_gamma(kappa))

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        by_matvec: list[Series] = []
        by_iteration: list[Series] = []
        guarded: set[bool] = set()  # one guarantee per preconditioner (it does not depend on the block)
        for outcome in outcomes:
            records = outcome.records
            if not records:
                continue
            its = _iterations(records)
            mv = np.asarray([r.n_matvec for r in records], dtype=float)
            err = np.abs(_ritz(records, 0) - lam1) / norm_a
            by_matvec.append(Series(outcome.label, mv, _positive(err), color=outcome.index))
            by_iteration.append(Series(outcome.label, its, _positive(err), color=outcome.index))
            jacobi = outcome.config.params.get("preconditioner") == "jacobi"
            sigma = sigma_for(jacobi)
            if sigma is not None and jacobi not in guarded:
                guarded.add(jacobi)
                theta = _ritz(records, 0)
                below = np.flatnonzero(theta < lam2)
                if below.size:
                    t0 = int(below[0])
                    steps = its[t0:] - its[t0]
                    bound = theory.pinvit_bound_curve(float(theta[t0]), lam1, lam2, sigma, steps) / norm_a
                    which_t = "Jacobi" if jacobi else "no preconditioner"
                    by_iteration.append(Series(f"guarantee, {which_t}: \u00d7 sigma^2 = {sigma ** 2:.4f} per step",
                                               its[t0:], np.maximum(bound, 1e-18), role="theory", color=outcome.index))
        return [Chart("lobpcg_iterations", "Smallest eigenvalue: error per iteration (with the guarantee)",
                      "iteration", "|theta_1 - lambda_1| / ||A||", tuple(by_iteration)),
                Chart("lobpcg_matvecs", "The same against matvecs (a bigger block costs more per iteration)",
                      "matvecs", "|theta_1 - lambda_1| / ||A||", tuple(by_matvec))]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        for outcome in outcomes:
            if outcome.result is None:
                continue
            out.append(f"{outcome.label}: {outcome.result.status.value} after {outcome.result.n_iter} iterations, "
                       f"{outcome.result.n_matvec} matvecs, {outcome.result.elapsed_s:.2f} s.")
        same = [o for o in outcomes[1:] if o.result is not None]
        if len(same) == 2 and same[0].result.n_matvec == same[1].result.n_matvec and torch.equal(
                same[0].result.eigenvalues, same[1].result.eigenvalues):
            out.append("Jacobi changed nothing: identical iterations and eigenvalues (a constant diagonal makes "
                       "D^-1 a multiple of the identity, and LOBPCG ignores the scale of T).")
        for jacobi in (False, True):
            kappa = kappas[jacobi]
            if kappa is not None:
                sigma = sigma_for(jacobi)
                extra = "" if sigma is None else (f"; guaranteed contraction sigma^2 = {sigma ** 2:.4f} per step, "
                                                  "far more pessimistic than what LOBPCG does")
                out.append(f"kappa(TA) with {'Jacobi' if jacobi else 'no preconditioner'}: {kappa:.4g}{extra}.")
        if kappas[False] is None:
            out.append("This matrix is singular (a graph Laplacian has the eigenvalue 0), so the SPD guarantee is "
                       "not drawn.")
        return out

    facts = {"n": f"{problem.n:,}", "lambda_1, lambda_2": f"{lam1:.5g}, {lam2:.5g}",
             "kappa(A)": "n/a" if kappas[False] is None else f"{kappas[False]:.4g}",
             "kappa(D^-1 A)": "n/a" if kappas[True] is None else f"{kappas[True]:.4g}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


LOBPCG = Lesson(
    key="lobpcg",
    title="LOBPCG: block size and preconditioning on a Laplacian",
    text=_LOBPCG_TEXT,
    params=(
        ParamSpec("problem", "choice", "laplacian_2d", "laplacian_2d: constant diagonal (Jacobi is a no-op); "
                  "random_graph_laplacian: varying degrees (Jacobi helps).",
                  choices=("laplacian_2d", "random_graph_laplacian")),
        ParamSpec("grid", "int", 20, "Grid side N (n = N^2; the graph has N^2 vertices too).", minimum=5, maximum=60),
        ParamSpec("block_size", "int", 6, "Block size of the 2nd and 3rd run (the 1st uses block = k = 3).",
                  minimum=3, maximum=16),
        ParamSpec("max_iter", "int", 300, "Iteration limit per run.", minimum=10, maximum=2000),
        ParamSpec("seed", "int", 0, "Seed of the random start block (and of the graph).", minimum=0),
    ),
    build=_lobpcg_build,
    references=("A. V. Knyazev, SIAM J. Sci. Comput. 23(2) (2001) 517-541",
                "A. V. Knyazev, K. Neymeyr, Linear Algebra Appl. 358 (2003) 95-114, Thm 1.1"),
    solvers=("lobpcg",),
)


# --------------------------------------------------------------------------------------
# 5. Randomized SVD
# --------------------------------------------------------------------------------------
_RSVD_TEXT = r"""
The randomized SVD (Halko, Martinsson & Tropp 2011) multiplies $A$ by a Gaussian block of
$k + p$ columns ($p$ = **oversampling**), orthonormalizes the result into $Q$, and finishes
with a small SVD of $Q^T A$. **Power iterations** replace $A$ by $(AA^T)^q A$, which sharpens
the decay of the singular values from $\sigma_j$ to $\sigma_j^{2q+1}$. The expected error has
a clean bound (HMT Thm 10.6 and Cor. 10.10):

$$\mathbb{E}\,\|A - QQ^TA\| \le \left[\Big(1 + \sqrt{\tfrac{k}{p-1}}\Big)\sigma_{k+1}^{2q+1} + \frac{e\sqrt{k+p}}{p}\Big(\sum_{j>k}\sigma_j^{2(2q+1)}\Big)^{1/2}\right]^{1/(2q+1)},$$

never better than the optimal $\sigma_{k+1}$; truncating to rank $k$ adds at most
$\sigma_{k+1}$ (Thm 9.3). The demo runs every $q$ from 0 up for a few random test matrices
(one per seed) and draws the true error of each rank-$k$ result; the dashed line bounds their
mean. The faint dotted line is the solver's own a-posteriori estimate
$10\sqrt{2/\pi}\,\max_i \|(I - QQ^T)Aw_i\|$ (HMT eq. 4.3): it needs no exact answer and holds
with probability $1 - 10^{-10}$, at the price of being an order of magnitude pessimistic.
With $p < 2$ the theorem says nothing.
"""


def _rsvd_build(values: Mapping[str, Any]) -> LessonSetup:
    n, k, p, q = int(values["n"]), int(values["k"]), int(values["oversampling"]), int(values["power_iterations"])
    decay, seeds = float(values["decay"]), int(values["seeds"])
    from explorer.solvers.randomized import randomized_svd  # the SVD itself (the menu lists the eigen version)

    problem = problems.prescribed_spectrum(n, "geometric", decay=decay, seed=0)
    sigma = np.sort(problem.eigenvalues.double().numpy())[::-1]  # symmetric PSD: singular values = eigenvalues
    # One run per (seed, j): exactly j power iterations (tol=None). A seed fixes the Gaussian test
    # matrix, which the solver draws first, so the runs of one seed differ only in j.
    configs = tuple(RunConfig("randomized_svd", {"n_oversamples": p, "n_power_iter": j, "seed": s, "tol": None},
                              label=f"seed {s}, q = {j}", fn=randomized_svd)
                    for s in range(seeds) for j in range(q + 1))
    settings = CompareSettings(k=k, which="LM", tol=1e-6, max_iter=None, budget=None, seed=0)
    dense = problem.operator.to_dense().double()
    optimal = float(sigma[k]) if k < sigma.size else 0.0

    def true_error(result: Any) -> float:
        U, S, Vh = (getattr(result, name, None) for name in ("U", "S", "Vh"))
        if U is None or S is None or Vh is None:
            return math.nan
        approx = (U.double() * S.double().unsqueeze(0)) @ Vh.double()
        return float(torch.linalg.matrix_norm(dense - approx, ord=2))

    def measured(outcomes: Sequence[RunOutcome]) -> dict[int, list[tuple[int, float]]]:
        by_seed: dict[int, list[tuple[int, float]]] = {}
        for outcome in outcomes:
            if outcome.result is not None:
                params = outcome.config.params
                by_seed.setdefault(int(params["seed"]), []).append((int(params["n_power_iter"]),
                                                                    true_error(outcome.result)))
        return by_seed

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        series: list[Series] = []
        for seed, points in sorted(measured(outcomes).items()):
            points.sort()
            series.append(Series(f"seed {seed}: true ||A - U S V^T||", np.asarray([j for j, _ in points], float),
                                 np.asarray([e for _, e in points]), mode="lines+markers", color=seed))
        longest = next((o for o in reversed(outcomes) if o.records and o.config.params["seed"] == 0
                        and o.config.params["n_power_iter"] == q), None)
        if longest is not None:
            xs = np.asarray([r.iteration - 1 for r in longest.records], dtype=float)
            ys = np.asarray([float(r.extras.get("error_estimate", math.nan)) for r in longest.records])
            series.append(Series("seed 0: the solver's a-posteriori estimate (HMT eq. 4.3)", xs, _positive(ys),
                                 role="reference"))
        qs = np.arange(0, q + 1)
        truncated = np.asarray([theory.hmt_truncated_spectral(sigma, k, p, int(j)) for j in qs])
        if np.isfinite(truncated).all():
            series.append(Series("HMT bound on the mean: sigma_(k+1) + E||A - QQ^T A||", qs.astype(float), truncated,
                                 role="theory", color=3))
        series.append(Series("optimal sigma_(k+1)", np.asarray([0.0, float(max(q, 1))]), np.asarray([optimal, optimal]),
                             role="reference"))
        return [Chart("rsvd_error", "Spectral error of the rank-k result against power iterations",
                      "power iterations q", "||A - U S V^T||", tuple(series))]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        by_q: dict[int, list[float]] = {}
        for points in measured(outcomes).values():
            for j, err in points:
                by_q.setdefault(j, []).append(err)
        out = []
        for j in sorted(by_q):
            bound = theory.hmt_truncated_spectral(sigma, k, p, j)
            bound_text = f"{bound:.3e}" if math.isfinite(bound) else "none (p < 2)"
            out.append(f"q = {j}: mean true error over {len(by_q[j])} seeds {np.mean(by_q[j]):.3e}; bound on the "
                       f"mean {bound_text}; optimal sigma_(k+1) = {optimal:.3e}.")
        return out

    facts = {"sigma_(k+1)": f"{optimal:.3e}", "k + p": str(k + p), "runs": f"{seeds} seeds x {q + 1} values of q",
             "bound q = 0 / q = " + str(q): f"{theory.hmt_truncated_spectral(sigma, k, p, 0):.3e} / "
                                             f"{theory.hmt_truncated_spectral(sigma, k, p, q):.3e}"}
    return LessonSetup(problem, configs, settings, charts, notes, facts)


RSVD = Lesson(
    key="rsvd",
    title="Randomized SVD: oversampling and power iterations (Halko-Martinsson-Tropp)",
    text=_RSVD_TEXT,
    params=(
        ParamSpec("k", "int", 5, "Target rank.", minimum=1, maximum=40),
        ParamSpec("oversampling", "int", 5, "Extra random columns p (the bound needs p >= 2).", minimum=0,
                  maximum=40),
        ParamSpec("power_iterations", "int", 2, "Power iterations q.", minimum=0, maximum=6),
        ParamSpec("decay", "float", 0.95, "Singular values sigma_j = decay^(j-1) (closer to 1: slower decay).",
                  minimum=0.5, maximum=0.995),
        ParamSpec("n", "int", 300, "Matrix size (dense).", minimum=50, maximum=1500),
        ParamSpec("seeds", "int", 4, "Random test matrices (each runs every q from 0 up).", minimum=1, maximum=5),
    ),
    build=_rsvd_build,
    references=("N. Halko, P.-G. Martinsson, J. A. Tropp, SIAM Review 53(2) (2011) 217-288, Thm 9.3, 10.5, 10.6, "
                "Cor. 10.10",),
    solvers=("randomized_svd",),
)


# --------------------------------------------------------------------------------------
# 6. The dense reference and its cost
# --------------------------------------------------------------------------------------
_DENSE_TEXT = r"""
The dense symmetric eigensolver (LAPACK's `syevd` behind `torch.linalg.eigh`) reduces $A$ to
tridiagonal form with Householder reflections and then solves the tridiagonal problem: about
$9n^3$ flops with eigenvectors (Golub & Van Loan 8.3) and $n^2$ numbers of memory for each
copy of the matrix. Doubling $n$ multiplies the time by 8. The dots are measured times of our
`eigh` solver (assembly included), the solid line a least-squares fit $c\,n^a$, the dashed
line $c\,n^3$ through the largest measurement.

An iterative method needs only products $Ax$: for a sparse matrix with a few nonzeros per row
that is $O(n)$ work per step, and a few dozen steps find well separated extreme eigenvalues.
The last run does exactly that on a sparse matrix far too large for `eigh` (the separate dot).
"""


def _dense_build(values: Mapping[str, Any]) -> LessonSetup:
    n_max, count, big = int(values["n_max"]), int(values["sizes"]), int(values["iterative_n"])
    sizes = sorted({int(round(x)) for x in np.geomspace(max(50, n_max // 8), n_max, count)})
    size_problems = [problems.laplacian_1d(n) for n in sizes]
    # A sparse diagonal with four separated top eigenvalues over a bulk in [0, 1]: Krylov-friendly.
    top = np.asarray([2.0, 1.8, 1.6, 1.4])
    bulk = np.linspace(1.0, 0.0, big - top.size)
    sparse_problem = problems.diagonal(np.concatenate([top, bulk]))
    configs = tuple(RunConfig("eigh", {}, label=f"eigh n = {n}", problem=pr) for n, pr in zip(sizes, size_problems))
    configs += (RunConfig("lanczos", {"reorthogonalization": "full"}, label=f"lanczos n = {big:,}",
                          problem=sparse_problem),)
    settings = CompareSettings(k=4, which="LA", tol=1e-8, max_iter=300, budget=None, seed=0)
    memory_gb = 8.0 * big * big / 1e9

    def measured(outcomes: Sequence[RunOutcome]) -> tuple[np.ndarray, np.ndarray]:
        ns, ts = [], []
        for outcome in outcomes[: len(sizes)]:
            if outcome.result is not None:
                ns.append(sizes[outcome.index])
                ts.append(float(outcome.result.elapsed_s))
        return np.asarray(ns, dtype=float), np.asarray(ts, dtype=float)

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        ns, ts = measured(outcomes)
        series: list[Series] = [Series("eigh: measured", ns, ts, mode="markers", color=0)]
        last = outcomes[-1]
        grid = np.geomspace(sizes[0], max(big, sizes[-1]), 60)
        if ns.size >= 2:
            a, c = theory.fit_power_law(ns, ts)
            series.append(Series(f"fit: c n^{a:.2f}", grid, c * grid ** a, role="measured", color=0))
        if ns.size >= 1:
            c3 = ts[-1] / ns[-1] ** 3
            series.append(Series("c n^3 (through the largest)", grid, c3 * grid ** 3, role="theory", color=0))
        if last.result is not None:
            series.append(Series(f"lanczos, k = 4, n = {big:,} (sparse)", np.asarray([float(big)]),
                                 np.asarray([float(last.result.elapsed_s)]), mode="markers", color=3))
        return [Chart("dense_cost", "Time against n", "n", "seconds", tuple(series), log_y=True, log_x=True)]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        ns, ts = measured(outcomes)
        out = []
        if ns.size >= 2:
            a, c = theory.fit_power_law(ns, ts)
            predicted = ts[-1] * (big / ns[-1]) ** 3
            out.append(f"Fitted exponent a = {a:.2f} (theory 3; small n are dominated by overheads). "
                       f"At n = {big:,}, c n^3 predicts {predicted:,.0f} s ({predicted / 3600:.1f} h) and the "
                       f"dense matrix alone needs {memory_gb:,.0f} GB.")
            flops = float(theory.eigh_flops(ns[-1]))
            out.append(f"At n = {int(ns[-1])}: 9 n^3 = {flops:.2e} flops in {ts[-1]:.3f} s, "
                       f"{flops / max(ts[-1], 1e-9) / 1e9:.1f} Gflop/s.")
        last = outcomes[-1]
        if last.result is not None:
            out.append(f"lanczos on the sparse n = {big:,} matrix: {last.result.status.value}, "
                       f"{last.result.n_matvec} matvecs, {last.result.elapsed_s:.2f} s.")
        return out

    facts = {"sizes": ", ".join(str(n) for n in sizes), "9 n^3 at n_max": f"{theory.eigh_flops(sizes[-1]):.2e} flops",
             f"dense memory at n = {big:,}": f"{memory_gb:,.0f} GB per copy"}
    return LessonSetup(size_problems[-1], configs, settings, charts, notes, facts)


DENSE = Lesson(
    key="dense",
    title="The dense reference: what eigh costs as n grows",
    text=_DENSE_TEXT,
    params=(
        ParamSpec("n_max", "int", 800, "Largest n given to dense eigh.", minimum=100, maximum=3000),
        ParamSpec("sizes", "int", 5, "How many sizes (geometrically spaced up to n_max).", minimum=2, maximum=8),
        ParamSpec("iterative_n", "int", 200_000, "Size of the sparse problem for the iterative run.",
                  minimum=10_000, maximum=2_000_000),
    ),
    build=_dense_build,
    references=("Golub & Van Loan, Matrix Computations, 4th ed., 8.3 (symmetric QR: ~9 n^3 flops with vectors)",
                "LAPACK Users' Guide, xSYEVD"),
    solvers=("eigh", "lanczos"),
)


LESSONS: dict[str, Lesson] = {lesson.key: lesson for lesson in (POWER, LANCZOS, GHOSTS, LOBPCG, RSVD, DENSE)}


def get_lesson(key: str) -> Lesson:
    """The lesson ``key`` (ValueError naming the choices otherwise)."""
    try:
        return LESSONS[key]
    except KeyError:
        raise ValueError(f"unknown lesson {key!r}; choose one of {list(LESSONS)}") from None



def run_lesson(setup: LessonSetup, *, tracker: Tracker | None = None,
               collector: ComparisonCollector | None = None) -> list[RunOutcome]:
    """Run a lesson's demo one run after another (the Compare page's runner, 1 to 8 runs)."""
    return run_comparison(setup.problem, setup.configs, setup.settings, tracker=tracker, collector=collector,
                          count=LESSON_RUNS)
