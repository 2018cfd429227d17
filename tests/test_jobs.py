"""SolveJob: background solves collect every record, stop on request, survive failures."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from explorer.runs.jobs import JobState, SolveJob, running_jobs
from explorer.operators import as_operator
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.solvers._common import Monitor, validate_common
from explorer.tracking import HistoryTracker


def _slow_solver(operator, k, *, steps, delay, tracker):
    """A tiny power-like loop with a known number of iterations (no solver dependency)."""
    v = validate_common("demo", operator, k, which="LM", tol=1e-12, max_iter=steps, default_max_iter=steps,
                        supported_which=("LM",))
    monitor = Monitor("demo", v, tracker)
    x = torch.ones(v.operator.shape[0], dtype=v.operator.dtype)
    for it in range(1, steps + 1):
        y = v.operator.matvec(x)
        x = y / torch.linalg.vector_norm(y)
        time.sleep(delay)
        theta = (x @ v.operator.matvec(x)).reshape(1)
        if monitor.record(it, theta, torch.ones(1), estimated=False, n_converged=0):
            return monitor.finish(eigenvalues=theta, eigenvectors=x[:, None], residual_norms=torch.ones(1),
                                  converged=torch.zeros(1, dtype=torch.bool), n_iter=it, status=SolveStatus.MAX_ITER)
    return monitor.finish(eigenvalues=theta, eigenvectors=x[:, None], residual_norms=torch.ones(1),
                          converged=torch.zeros(1, dtype=torch.bool), n_iter=steps, status=SolveStatus.MAX_ITER)


A = as_operator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))


def test_job_collects_every_record_and_the_result():
    history = HistoryTracker()
    job = SolveJob(lambda tr: _slow_solver(A, 1, steps=20, delay=0.0, tracker=tr), extra_tracker=history).start()
    assert job.wait(30)
    view = job.view()
    assert view.state == JobState.DONE and not view.alive
    assert [r.iteration for r in view.records] == list(range(1, 21))
    assert len(history) == 20 and isinstance(view.result, EigenResult)
    matvecs = [r.n_matvec for r in view.records]
    assert matvecs == sorted(matvecs) and matvecs[-1] == 40


def test_stop_ends_the_job_within_an_iteration_and_keeps_the_partial_result():
    job = SolveJob(lambda tr: _slow_solver(A, 1, steps=10_000, delay=0.01, tracker=tr)).start()
    deadline = time.monotonic() + 20
    while len(job.view().records) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    job.request_stop("test stop")
    assert job.wait(10)
    assert time.monotonic() - t0 < 2.0  # one iteration is 10 ms; 2 s is loaded-machine slack
    view = job.view()
    assert view.result.status is SolveStatus.STOPPED
    assert "test stop" in view.result.status_message
    assert 5 <= len(view.records) < 10_000 and len(view.result.history) == len(view.records)


def test_a_detached_job_stops_by_itself():
    job = SolveJob(lambda tr: _slow_solver(A, 1, steps=10_000, delay=0.01, tracker=tr), detached_timeout=0.2).start()
    job.detach()
    assert job.wait(10)
    assert job.view().result.status is SolveStatus.STOPPED
    assert "closed" in job.stop_reason


def test_a_failing_solve_becomes_a_message_not_an_exception():
    job = SolveJob(lambda tr: _slow_solver(as_operator(torch.ones(3, 4)), 1, steps=2, delay=0, tracker=tr)).start()
    assert job.wait(10)
    view = job.view()
    assert view.state == JobState.FAILED
    assert "must be square" in view.error and "Traceback" not in view.error
    assert "Traceback" in job.error_detail


def test_two_jobs_in_parallel_keep_their_own_records():
    jobs = [SolveJob(lambda tr, s=s: _slow_solver(A, 1, steps=s, delay=0.002, tracker=tr)).start() for s in (30, 45)]
    for job in jobs:
        assert job.wait(30)
    assert [len(job.view().records) for job in jobs] == [30, 45]
    assert running_jobs() == 0 or all(not job.alive for job in jobs)


def test_view_is_safe_while_the_job_appends():
    job = SolveJob(lambda tr: _slow_solver(A, 1, steps=300, delay=0.0, tracker=tr)).start()
    seen = []
    while job.alive:
        seen.append(len(job.view().records))
    job.wait(10)
    assert seen == sorted(seen)
    assert len(job.view().records) == 300


def test_stop_before_start_is_honoured():
    gate = threading.Event()
    job = SolveJob(lambda tr: (gate.wait(5), _slow_solver(A, 1, steps=1000, delay=0.01, tracker=tr))[1])
    job.request_stop("early")
    job.start()
    gate.set()
    assert job.wait(10)
    assert job.stop_reason == "early"
