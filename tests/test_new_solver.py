"""Adding a solver is one module plus one ``register_solver`` call, and nothing else.

The module below (written to a temporary directory, never part of ``explorer``) is a tiny
but real solver: block Krylov Rayleigh-Ritz without restarts (the basis grows by one block of
residuals per iteration, classical Gram-Schmidt twice; at n columns it is exact). Once it is
imported it must appear

* in the registry (``SOLVERS``, ``solve``), with its parameter validated by its ``ParamSpec``;
* in the app: the Explore page's solver menu, its option widget, and a Run that converges;
* in the shared test suites that parametrize over the registry (the spectral contract,
  validation, tracking), collected and passing, with no edit to those files.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from explorer import problems
from explorer.solvers import SOLVERS, solve

ROOT = Path(__file__).resolve().parents[1]
NAME = "toy_krylov"

TOY_MODULE = textwrap.dedent('''
    """Block Krylov Rayleigh-Ritz, no restart (Saad 2011, Sec. 6.1): a solver in one module."""

    from __future__ import annotations

    from typing import Any

    import torch

    from explorer.solvers._common import (Monitor, ProductUnits, UnitsOperator, make_generator, nonfinite_message,
                                          random_block, residual_threshold, select_order, validate_common)
    from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
    from explorer.tracking import SolveStatus


    def toy_krylov(operator: Any, k: int, *, which: str = "LA", tol: float = 1e-6, max_iter: int | None = None,
                   X0: torch.Tensor | None = None, seed: int | None = None, tracker: Any = None, B: Any = None,
                   block: int = 2):
        v = validate_common("toy_krylov", operator, k, which=which, tol=tol, max_iter=max_iter,
                            default_max_iter=1000, supported_which=("LA", "SA", "LM", "BE"), X0=X0, B=B)
        n, dtype, device = v.operator.shape[0], v.operator.dtype, v.operator.device
        monitor = Monitor("toy_krylov", v, tracker, extras={"block": block})
        units = monitor.units = ProductUnits(dtype)
        op = UnitsOperator(v.operator, units)
        W = random_block(n, block, make_generator(seed), dtype=dtype, device=device)
        if v.X0 is not None:
            W = torch.cat([v.X0, W], dim=1)[:, : max(block, v.X0.shape[1])]
        Q = torch.zeros(n, 0, dtype=dtype, device=device)
        AQ = torch.zeros_like(Q)
        empty = torch.zeros(0, dtype=dtype, device=device)
        last = (empty, torch.zeros(n, 0, dtype=dtype, device=device), empty, torch.zeros(0, dtype=torch.bool))
        status, message, it, norm = SolveStatus.MAX_ITER, "", 0, 0.0
        while it < v.max_iter:
            for _ in range(2):  # CGS2 against the basis, then within the block
                W = W - Q @ (Q.T @ W)
            W, R = torch.linalg.qr(W)
            W = W[:, R.diagonal().abs() > torch.finfo(dtype).eps * max(1.0, float(R.abs().max()))]
            if W.shape[1] == 0 or Q.shape[1] >= n:
                status, message = SolveStatus.BREAKDOWN, "the Krylov space is exhausted (invariant subspace)"
                break
            AW = op.matmat(W)
            if not bool(torch.isfinite(AW).all()):
                status, message = SolveStatus.BREAKDOWN, nonfinite_message(f"iteration {it + 1}", monitor.n_matvec,
                                                                           "the last iterate before it")
                break
            it += 1
            Q, AQ = torch.cat([Q, W], dim=1), torch.cat([AQ, AW], dim=1)
            H = (Q.T @ AQ).double()
            theta, S = torch.linalg.eigh(0.5 * (H + H.T))
            norm = max(norm, float(theta.abs().max()))
            order = select_order(theta, v.which)[: v.k]
            Sd = S[:, order].to(dtype)
            X, AX = Q @ Sd, AQ @ Sd
            values = theta[order].to(dtype)
            residuals = torch.linalg.vector_norm(AX - X * values, dim=0)
            converged = (residuals.double() <= residual_threshold(theta[order], v.tol, norm)).cpu()
            last = (values, X, residuals, converged)
            stop = monitor.record(it, values, residuals, estimated=False, n_converged=int(converged.sum()))
            if len(order) == v.k and bool(converged.all()):
                status = SolveStatus.CONVERGED
                break
            if stop:
                break
            W = (AX - X * values)[:, ~converged.to(device)][:, :block]
        values, X, residuals, converged = last
        if status is SolveStatus.BREAKDOWN and len(values) == v.k and bool(converged.all()):
            status, message = SolveStatus.CONVERGED, ""
        return monitor.finish(eigenvalues=values, eigenvectors=X, residual_norms=residuals, converged=converged,
                              n_iter=it, status=status, message=message, norm_estimate=norm)


    register_solver(SolverSpec(
        name="toy_krylov", label="Toy block Krylov (test)", fn=toy_krylov,
        summary="Block Krylov Rayleigh-Ritz without restarts (defined in tests/test_new_solver.py).",
        which=("LA", "SA", "LM", "BE"),
        params=(ParamSpec("block", "int", 2, "Columns added to the basis per iteration.", minimum=1, maximum=8),),
        default_max_iter=1000, references=("Saad 2011, Sec. 6.1",),
    ))
''')

PLUGIN = "import toy_solver_module  # noqa: F401  (registers toy_krylov before the suites are collected)\n"


@pytest.fixture()
def toy(tmp_path: Path):
    """The toy module written to tmp_path and imported (registered); unregistered afterwards."""
    (tmp_path / "toy_solver_module.py").write_text(TOY_MODULE)
    (tmp_path / "toy_solver_plugin.py").write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("toy_solver_module", tmp_path / "toy_solver_module.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield tmp_path
    SOLVERS.pop(NAME, None)


def test_the_new_solver_is_in_the_registry_and_solves(toy: Path) -> None:
    spec = SOLVERS[NAME]
    assert spec.label == "Toy block Krylov (test)" and spec.param("block").default == 2
    problem = problems.laplacian_1d(80)
    result = solve(NAME, problem.operator, 3, which="SA", tol=1e-8, seed=0, block=3)
    assert result.status.value == "converged", result.message
    exact = problem.reference(3, "SA")
    norm = float(problem.eigenvalues.abs().max())
    # each pair's residual bounds its eigenvalue error (symmetric Bauer-Fike): ||r|| <= tol max(|theta|, ...)
    assert torch.allclose(result.eigenvalues, exact, rtol=0.0, atol=2e-8 * norm)
    with pytest.raises(ValueError, match="`block` must be <= 8"):
        solve(NAME, problem.operator, 3, block=9)


def test_the_new_solver_appears_in_the_app_menu_and_form_and_runs(toy: Path, apptest, wait_job) -> None:
    at = apptest()
    label = SOLVERS[NAME].label
    assert label in at.selectbox(key="solver").options
    at.selectbox(key="solver").set_value(NAME).run()
    widget = at.number_input(key=f"p_{NAME}_block")  # the option form, from its ParamSpec
    assert widget.value == 2
    widget.set_value(3).run()
    at.number_input(key="k").set_value(3).run()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    assert not at.exception, [e.value for e in at.exception]
    run = at.session_state["runs"][-1]
    assert run.solver == NAME and run.status == "converged" and run.params["block"] == 3
    assert run.max_error is not None and run.max_error < 1e-6  # the sample's eigenvalues are exact


def test_the_shared_suites_collect_and_pass_the_new_solver(toy: Path) -> None:
    suites = ["tests/test_solvers_contract.py", "tests/test_validation.py", "tests/test_tracking.py"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(toy), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "toy_solver_plugin",
                          "-k", NAME, *suites], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    summary = out.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    # 4 which x 3 problems x 2 dtypes in the contract alone, plus scaling, NaN, X0, validation, tracking
    assert passed >= 60, summary
