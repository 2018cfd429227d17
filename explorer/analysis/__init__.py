"""Reading runs: what went wrong, what theory predicts, and side-by-side comparisons.

* ``diagnosis``: rules over a run's records and result (ghosts, stagnation, a missed
  eigenvalue, a tolerance below the dtype, ...) with suggestions.
* ``theory``: convergence bounds (Kaniel-Paige-Saad, power iteration, Halko-Martinsson-Tropp)
  evaluated on a known spectrum, for the lessons and the diagnosis.
* ``compare``: several solver configurations on one problem under one matvec budget.

Imports go down only: analysis reads solvers, tracking and problems; solvers never import it.
"""
