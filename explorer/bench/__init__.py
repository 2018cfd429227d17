"""Benchmarks against the peers, each run in its own process.

* ``python -m explorer.bench``: matrices (``matrix``): our solvers against ARPACK, PRIMME,
  scipy and torch LOBPCG on Laplacians and dense prescribed spectra.
* ``python -m explorer.bench.hessian``: top Hessian eigenvalues of small networks against
  hessian-eigenthings and ARPACK (``hessian``).

Measured figures and the commands that reproduce them: ``docs/benchmarks.md``.
"""
