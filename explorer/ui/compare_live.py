"""Several runs in one background job, watched live: the Compare and Learn pages' panel.

Built on ``explorer.ui.live`` (the app's run / stop / heartbeat machinery) and
``explorer.analysis.compare`` (the runner): ``start_comparison`` starts one ``SolveJob`` under
``key`` whose target is ``explorer.analysis.compare.run_comparison``; the runs stream their
records into a ``ComparisonCollector`` kept in the job's ``meta``. ``comparison_panel``
is ``live.live_panel`` (heartbeat, Stop, one full rerun when the job ends) with hooks:
it draws the collector's snapshot through a page-supplied ``render(outcomes, running)``,
because a comparison overlays several runs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Sequence

import streamlit as st

from explorer.analysis.compare import (
    MAX_CONFIGS,
    MIN_CONFIGS,
    CompareSettings,
    ComparisonCollector,
    RunConfig,
    RunOutcome,
    check_configs,
    run_comparison,
    wanted_reference,
)
from explorer.runs.jobs import JobView, SolveJob
from explorer.runs.record import run_from_view
from explorer.tracking import Tracker
from explorer.ui import live
from explorer.ui.state import add_run, next_run_id

__all__ = ["start_comparison", "comparison_panel", "collector_of", "progress_line", "log_runs"]

Render = Callable[[Sequence[RunOutcome], bool], None]


def log_runs(outcomes: Sequence[RunOutcome], settings: CompareSettings, *, problem_label: str, n: int,
             reference: Any = None, page: str = "compare") -> None:
    """Append every run of a finished comparison to the session's run log (the History page)."""
    for outcome in outcomes:
        if outcome.state == "skipped":
            continue
        which = str(outcome.config.params.get("which", settings.which))
        max_iter = settings.max_iter if outcome.config.fn is not None else settings.kwargs_for(outcome.config)["max_iter"]
        params = {"k": settings.k, "which": which, "tol": outcome.config.params.get("tol", settings.tol),
                  "max_iter": max_iter, "seed": settings.seed,
                  "budget": settings.budget, **outcome.config.extras(), "device": "cpu", "dtype": settings.dtype}
        view = SimpleNamespace(result=outcome.result, records=outcome.records, error=outcome.error,
                               stop_reason=None, elapsed_s=outcome.wall_s)
        spectral = {name: outcome.config.params.get(name) for name in ("sigma", "lower", "upper")}
        add_run(run_from_view(next_run_id(), view, solver=outcome.config.solver, problem=problem_label, n=n,
                              params=params, reference=None if reference is None
                              else wanted_reference(reference, settings.k, which, **spectral),
                              page=page, extra={"label": outcome.label, "findings": outcome.findings}))


def start_comparison(key: str, problem: Any, configs: Sequence[RunConfig], settings: CompareSettings, *,
                     reference: Any = None, label: str = "comparison", count: tuple[int, int] = (MIN_CONFIGS,
                                                                                             MAX_CONFIGS),
                     meta: dict[str, Any] | None = None, log_as: str | None = None) -> None:
    """Validate, then run ``configs`` on ``problem`` in a background job under ``key``.

    Raises the core's ValueError/TypeError (bad configuration) before anything starts,
    and ValueError when a job under ``key`` still runs. ``reference``: every exact
    eigenvalue (for the diagnosis and the error curves), or None. ``log_as``: a problem
    label; when given, every run goes to the session's run log when the job ends.
    """
    configs = [settings.resolve(config) for config in configs]  # the shared sigma, where it applies
    check_configs(configs, settings, n=problem.operator.shape[0], count=count)
    collector = ComparisonCollector(configs)

    def target(tracker: Tracker) -> list[RunOutcome]:
        return run_comparison(problem, configs, settings, tracker=tracker, collector=collector, count=count,
                              reference=reference)

    def on_finish(job: SolveJob, view: JobView) -> None:
        if log_as is not None:
            log_runs(collector.snapshot(), settings, problem_label=log_as, n=problem.operator.shape[0],
                     reference=reference, page=key)

    live.start_job(key, target, label=label, on_finish=on_finish,
                   params={"runs": [c.display() for c in configs], "k": settings.k, "which": settings.which,
                           "tol": settings.tol, "budget": settings.budget, "sigma": settings.sigma},
                   meta={"collector": collector, "settings": settings, "reference": reference,
                         "configs": tuple(configs), **(meta or {})})


def collector_of(key: str) -> ComparisonCollector | None:
    """The collector of the latest comparison under ``key`` (None before the first)."""
    return live.job_meta(key).get("collector")


def progress_line(outcomes: Sequence[RunOutcome], settings: CompareSettings | None) -> tuple[float, str]:
    """(fraction, text): runs finished, and the running run's iteration and matvecs against the budget."""
    total = max(len(outcomes), 1)
    finished = sum(1 for o in outcomes if o.state in ("done", "failed", "skipped"))
    running = [o for o in outcomes if o.state == "running"]
    parts = [f"{finished}/{len(outcomes)} runs finished"]
    fraction = finished / total
    for outcome in running:
        last = outcome.records[-1] if outcome.records else None
        it = last.iteration if last else 0
        mv = last.n_matvec if last else 0
        budget = settings.budget if settings is not None else None
        parts.append(f"{outcome.label}: iteration {it:,}, {mv:,}" + (f"/{budget:,}" if budget else "") + " matvecs")
        if budget:
            fraction += min(1.0, mv / budget) / total
    return min(1.0, fraction), " \u00b7 ".join(parts)


def comparison_panel(key: str, render: Render, *, refresh: float = live.REFRESH_S, stop_key: str | None = None,
                     empty_message: str = "Press **Run** to start; the curves appear here live.") -> list[RunOutcome] | None:
    """Progress, Stop and ``render(outcomes, running)`` for the comparison under ``key``.

    ``live.live_panel`` with the comparison's hooks: the data drawn is the collector's
    snapshot of every run, the progress line counts runs and matvecs against the budget.
    """
    collector = collector_of(key)
    if live.current_job(key) is None or collector is None:
        st.info(empty_message)
        return None
    settings = live.job_meta(key).get("settings")

    def draw(outcomes: Sequence[RunOutcome], alive: bool) -> None:
        job = live.current_job(key)
        if job is not None and job.error:
            st.error(f"The comparison could not run: {job.error}", icon=":material/error:")
        render(outcomes, alive)

    return live.live_panel(key, snapshot=lambda view: collector.snapshot(),
                           progress=lambda outcomes: progress_line(outcomes, settings), render=draw, caption=False,
                           refresh=refresh, stop_key=stop_key, empty_message=empty_message,
                           stop_help="End the running run after its current iteration and skip the rest; results "
                           "so far stay.")
