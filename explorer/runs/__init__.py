"""What the app needs to run a solve and keep it, without Streamlit.

* ``config``: ``SolveConfig``, a solve as the forms describe it (solver, k, which, tol, device,
  dtype, extras), and ``make_target`` (the operator on the chosen device and dtype).
* ``jobs``: ``SolveJob``, a solve in a background thread with a tracker, Stop and a heartbeat.
* ``record``: ``RunRecord``, a finished (or failed, or stopped) run for the History page.
* ``snippet``: the Python code that reproduces a run.
"""

from explorer.runs.record import RunRecord, final_errors, history_csv, history_json, run_from_view, runs_frame

__all__ = ["RunRecord", "run_from_view", "runs_frame", "final_errors", "history_csv", "history_json"]
