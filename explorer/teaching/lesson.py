"""What a lesson is: its text, its parameters, its runs and its charts; helpers the lessons share.

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

from explorer.analysis.compare import CompareSettings, ComparisonCollector, RunConfig, RunOutcome, run_comparison
from explorer.solvers.registry import ParamSpec
from explorer.tracking import Tracker

__all__ = ["Series", "Chart", "LessonSetup", "Lesson", "LESSON_RUNS", "run_lesson", "staircase_points", "start_vector",
           "iterations", "ritz_column", "positive"]

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


def start_vector(n: int, seed: int) -> torch.Tensor:
    """A Gaussian start (local generator): known to the theory through its angles."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(n, generator=generator, dtype=torch.float64)


def iterations(records: Sequence[Any]) -> np.ndarray:
    """The iteration number of each record, as floats (a chart's x)."""
    return np.asarray([r.iteration for r in records], dtype=float)


def ritz_column(records: Sequence[Any], column: int = 0) -> np.ndarray:
    """Ritz value number ``column`` of each record (NaN where a record has fewer)."""
    out = np.full(len(records), np.nan)
    for t, record in enumerate(records):
        if record.ritz_values.numel() > column:
            out[t] = float(record.ritz_values[column])
    return out


def positive(values: np.ndarray, floor: float = 1e-18) -> np.ndarray:
    """A copy with values <= 0 raised to ``floor`` (for log axes)."""
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


def run_lesson(setup: LessonSetup, *, tracker: Tracker | None = None,
               collector: ComparisonCollector | None = None) -> list[RunOutcome]:
    """Run a lesson's demo one run after another (the Compare page's runner, 1 to 8 runs)."""
    return run_comparison(setup.problem, setup.configs, setup.settings, tracker=tracker, collector=collector,
                          count=LESSON_RUNS)
