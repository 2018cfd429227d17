"""Lessons that draw a point per Lanczos step ask Lanczos for a record per step."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("key", ["lanczos", "ghosts", "chebyshev"])
def test_lessons_that_draw_per_step_curves_record_every_lanczos_step(key: str) -> None:
    """Lanczos records about every 20 ms by default (ritz_every="auto"); the lessons whose
    charts have a point per step pass ritz_every=1, and get one record per Lanczos step."""
    from explorer.teaching import LESSONS, run_lesson

    setup = LESSONS[key].setup()
    lanczos_runs = [c for c in setup.configs if c.solver == "lanczos"]
    assert lanczos_runs and all(c.params.get("ritz_every") == 1 for c in lanczos_runs)
    if key == "lanczos":
        outcomes = run_lesson(setup)
        result = next(o.result for o in outcomes if o.result is not None and o.result.solver == "lanczos")
        assert [r.iteration for r in result.history] == list(range(1, result.n_iter + 1))
