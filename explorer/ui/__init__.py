"""Streamlit UI building blocks (the only package that imports streamlit).

Reusable entry points for pages:

* ``explorer.ui.live``: ``start_job`` / ``stop_job`` / ``live_panel`` / ``collect_finished``:
  run any solve in a background ``SolveJob`` and watch it live (one top-level fragment).
* ``explorer.ui.widgets``: ``param_widget`` / ``param_form``: widgets from ``ParamSpec``.
* ``explorer.ui.problem``: ``problem_sidebar`` / ``active_problem`` / ``problem_preview`` /
  ``cached_problem`` / ``cached_reference``: choose, load (cached) and preview a problem.
* ``explorer.ui.solver``: ``solver_sidebar`` / ``solver_config``: solver, device and parameters.
* ``explorer.ui.runner``: ``run_button`` / ``start_solve`` / ``last_run``: the Run button that starts the
  configured solve on the active problem and logs it (``explorer.runs.RunRecord``) when it ends.
* ``explorer.ui.results``: ``render_run``: status, eigenpair table, spectrum plot, downloads, snippet.
* ``explorer.ui.state``: session keys, ``init_session`` (called by app.py), ``runs`` / ``add_run``.
* ``explorer.ui.charts``: ``show(fig, key)`` and the figure builders of ``explorer.plots``.
"""
