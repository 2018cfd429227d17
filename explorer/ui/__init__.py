"""Streamlit UI building blocks (the only package that imports streamlit).

Reusable entry points for pages:

* ``explorer.ui.entry``: ``frame`` (app.py runs each page inside it) / ``require_frame`` (the first
  call of every page: a page that Streamlit started alone hands over to app.py).
* ``explorer.ui.live``: ``start_job`` / ``stop_job`` / ``live_panel`` / ``collect_finished``:
  run any solve in a background ``SolveJob`` and watch it live (one top-level fragment, with a
  "Pause live view" toggle); ``live_panel``'s ``snapshot`` / ``progress`` / ``render`` hooks draw
  other data (``explorer.ui.compare_live.comparison_panel`` overlays several runs with them).
* ``explorer.ui.widgets``: ``param_widget`` / ``param_form``: widgets from ``ParamSpec``.
* ``explorer.ui.problem``: ``problem_sidebar`` / ``active_problem`` / ``problem_preview`` /
  ``cached_problem`` / ``cached_reference``: choose, load (cached) and preview a problem.
* ``explorer.ui.solver``: ``solver_sidebar`` / ``solver_config``: solver, device and parameters.
* ``explorer.ui.runner``: ``run_button`` / ``start_solve`` / ``last_run``: the Run button that starts the
  configured solve on the active problem and logs it (``explorer.runs.RunRecord``) when it ends.
* ``explorer.ui.runstore``: ``app_store`` (the server's run store, or why runs stay in memory),
  ``tracker`` / ``finish_job_run`` / ``save_run`` (runs into the store), ``all_runs`` / ``records_of``
  (every stored run, any process's), ``follow_panel`` (the live view of a stored run still going).
* ``explorer.ui.results``: ``render_run``: status, eigenpair table, spectrum plot, downloads, snippet.
* ``explorer.ui.state``: session keys, ``init_session`` (called by app.py), ``ensure`` /
  ``ensure_choice`` / ``keep`` (settings that survive page switches), ``runs`` / ``add_run``.
* ``explorer.ui.charts``: ``show(fig, key)`` and the figure builders of ``explorer.plots.figures``.
"""
