"""Diagnosis rules: each fires on a problem built to trigger it and stays quiet on healthy runs.

Problems come from explorer.problems and runs from the registered solvers. A few rules are
also checked on hand-made results (their logic does not depend on any solver).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer import problems
from explorer.analysis.compare import MatvecBudget
from explorer.analysis.diagnosis import ATTAINABLE_FACTOR, RULES, Finding, diagnose
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.solvers import SOLVERS, solve
from explorer.tracking import IterationRecord

@pytest.fixture(autouse=True)
def _one_torch_thread():  # noqa: ANN202
    """One intra-op thread: on a loaded 2-core box two OpenMP threads slow small ops ~30x (../shared/LIVE.md 2.4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)





def values_top(problem, i: int) -> float:  # noqa: ANN001
    """The (i+1)-th largest exact eigenvalue."""
    return float(problem.eigenvalues[-1 - i])


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def _check_finding(finding: Finding) -> None:
    assert finding.rule in RULES
    assert finding.severity in ("error", "warning", "info")
    assert finding.message and finding.suggestion


# --------------------------------------------------------------------------------------
# Healthy runs: no rule fires
# --------------------------------------------------------------------------------------
HEALTHY = [
    pytest.param("lobpcg", lambda: problems.laplacian_2d(10), dict(which="SA", tol=1e-8), id="lobpcg-laplacian"),
    pytest.param("eigh", lambda: problems.wishart(80, seed=1), dict(which="LA", tol=1e-8), id="eigh-wishart"),
    pytest.param("lanczos", lambda: problems.prescribed_spectrum(150, "geometric", decay=0.7),
                 dict(which="LA", tol=1e-8, reorthogonalization="full"), id="lanczos-full"),
    pytest.param("power_iteration", lambda: problems.prescribed_spectrum(100, "gap", gap_ratio=0.5),
                 dict(which="LM", tol=1e-8, max_iter=500), id="power-gap"),
]


@pytest.mark.parametrize("solver, make, kwargs", HEALTHY)
def test_healthy_runs_have_no_findings(solver: str, make, kwargs: dict) -> None:  # noqa: ANN001
    problem = make()
    k = 1 if solver == "power_iteration" else 3
    result = solve(solver, problem.operator, k, seed=0, **kwargs)
    assert result.status is SolveStatus.CONVERGED
    findings = diagnose(result, reference=problem.eigenvalues)
    assert findings == [], [f.message for f in findings]
    # also quiet without a reference
    assert diagnose(result) == []


# --------------------------------------------------------------------------------------
# Triggers with real solves
# --------------------------------------------------------------------------------------
def test_max_iter_fires_with_an_estimate() -> None:
    problem = problems.laplacian_2d(12)
    result = solve("lobpcg", problem.operator, 3, which="SA", tol=1e-8, max_iter=8, seed=0)
    assert result.status is SolveStatus.MAX_ITER
    findings = diagnose(result, reference=problem.eigenvalues)
    finding = next(f for f in findings if f.rule == "max_iter")
    _check_finding(finding)
    assert finding.severity == "error"
    assert finding.evidence["n_iter"] == 8
    assert finding.evidence.get("estimated_more_iterations", 0) > 0
    assert "stagnation" not in rules(findings)  # too short to call it flat


def test_float32_with_unreachable_tol_flags_dtype_and_stagnation() -> None:
    problem = problems.laplacian_2d(10)
    op = problem.operator.to(dtype=torch.float32)
    result = solve("lobpcg", op, 2, which="LA", tol=1e-8, max_iter=150, seed=0)
    assert result.status is SolveStatus.MAX_ITER
    eps = float(torch.finfo(torch.float32).eps)
    norm_a = float(problem.eigenvalues.abs().max())
    # the residual really did stall at the rounding floor the rule assumes
    assert float(result.residual_norms.max()) >= 0.5 * eps * norm_a
    findings = diagnose(result, reference=problem.eigenvalues)
    found = rules(findings)
    assert {"tolerance_below_dtype", "stagnation", "max_iter"} <= found
    tol_finding = next(f for f in findings if f.rule == "tolerance_below_dtype")
    _check_finding(tol_finding)
    assert "float64" in tol_finding.suggestion.lower()
    assert tol_finding.evidence["attainable_residual"] == pytest.approx(ATTAINABLE_FACTOR * eps * norm_a, rel=1e-6)
    stagnation = next(f for f in findings if f.rule == "stagnation")
    assert stagnation.evidence["at_rounding_floor"]


def test_tolerance_rule_quiet_when_reachable() -> None:
    problem = problems.laplacian_2d(10)
    op = problem.operator.to(dtype=torch.float32)
    result = solve("lobpcg", op, 2, which="LA", tol=1e-4, max_iter=300, seed=0)
    assert result.status.ok
    assert "tolerance_below_dtype" not in rules(diagnose(result, reference=problem.eigenvalues))


def test_missed_eigenvalue_when_the_start_has_no_component() -> None:
    # diag(5, 4, 3, ...) with a start that is exactly zero on e_0: every product keeps it
    # zero, so the solver converges to 4 and 3 and skips 5.
    values = np.concatenate([[5.0, 4.0, 3.0], np.linspace(2.0, 0.0, 57)])
    problem = problems.diagonal(values)
    X0 = torch.randn(60, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X0[0] = 0.0
    result = solve("lobpcg", problem.operator, 2, which="LA", tol=1e-8, X0=X0, block_size=2)
    assert result.status.ok
    np.testing.assert_allclose(result.eigenvalues.numpy(), [4.0, 3.0], atol=1e-6)
    findings = diagnose(result, reference=problem.eigenvalues)
    assert "missed_eigenvalue" in rules(findings)
    finding = next(f for f in findings if f.rule == "missed_eigenvalue")
    _check_finding(finding)
    assert finding.evidence["missed"][0]["value"] == pytest.approx(5.0)
    assert 3.0 in [pytest.approx(v) for v in finding.evidence["returned_instead"]]
    # without the reference the rule cannot tell
    assert "missed_eigenvalue" not in rules(diagnose(result))


def test_missed_rule_quiet_on_a_true_double_eigenvalue_found_twice() -> None:
    problem = problems.laplacian_2d(8)  # exact doubles; block LOBPCG finds both copies
    result = solve("lobpcg", problem.operator, 3, which="SA", tol=1e-9, seed=0)
    assert result.status.ok
    found = rules(diagnose(result, reference=problem.eigenvalues))
    assert "missed_eigenvalue" not in found and "ghost_eigenvalues" not in found


def test_stopped_by_a_matvec_budget_is_reported() -> None:
    problem = problems.laplacian_2d(12)
    budget = MatvecBudget(40)
    result = solve("lobpcg", problem.operator, 3, which="SA", tol=1e-10, seed=0, tracker=budget)
    assert result.status is SolveStatus.STOPPED and budget.hit
    finding = next(f for f in diagnose(result) if f.rule == "stopped")
    assert finding.severity == "info" and "budget" in finding.message


def test_lanczos_without_reorthogonalization_shows_ghosts() -> None:
    # Strakos' matrix: the top eigenvalues converge fast, then come back as ghosts.
    n, rho = 100, 0.9
    i = np.arange(1, n + 1, dtype=float)
    spectrum = 0.1 + (i - 1) / (n - 1) * 99.9 * rho ** (n - i)
    problem = problems.diagonal(spectrum)
    x0 = torch.ones(n, dtype=torch.float64)
    # 90 < n steps: the full run never exhausts the space
    plain = solve("lanczos", problem.operator, 4, which="LA", tol=1e-15, max_iter=90, X0=x0,
                  reorthogonalization="none", max_basis=200, block_size=1)
    full = solve("lanczos", problem.operator, 4, which="LA", tol=1e-15, max_iter=90, X0=x0,
                 reorthogonalization="full", max_basis=200, block_size=1)
    found = rules(diagnose(plain, reference=problem.eigenvalues))
    assert found & {"ghost_eigenvalues", "orthogonality_lost"}
    assert not rules(diagnose(full, reference=problem.eigenvalues)) & {"ghost_eigenvalues", "orthogonality_lost"}


def test_lanczos_misses_a_double_eigenvalue() -> None:
    values = np.concatenate([[5.0, 5.0, 4.0], np.linspace(3.0, 0.0, 97)])
    problem = problems.diagonal(values)
    # a single start vector (block_size 1): the Krylov space holds one direction of the double eigenspace
    result = solve("lanczos", problem.operator, 2, which="LA", tol=1e-8, reorthogonalization="full", seed=0,
                   block_size=1)
    assert result.status.ok
    findings = diagnose(result, reference=problem.eigenvalues)
    finding = next(f for f in findings if f.rule == "missed_eigenvalue")
    assert finding.evidence["missed"][0]["multiplicity"] == 2
    assert "block" in finding.suggestion.lower()


def test_lanczos_breakdown_on_an_invariant_start() -> None:
    problem = problems.diagonal(np.linspace(1.0, 10.0, 50))
    x0 = torch.zeros(50, dtype=torch.float64)
    x0[-1] = 1.0  # an eigenvector: the Krylov space is invariant after one step
    result = solve("lanczos", problem.operator, 3, which="LA", tol=1e-8, X0=x0, block_size=1)
    findings = diagnose(result, reference=problem.eigenvalues)
    if result.status is SolveStatus.BREAKDOWN:
        finding = next(f for f in findings if f.rule == "breakdown")
        assert finding.severity == "error" and "start" in finding.suggestion
    else:  # this lanczos continues with fresh random vectors: then nothing may be reported
        assert result.status.ok
        np.testing.assert_allclose(result.eigenvalues.numpy(), [10.0, values_top(problem, 1), values_top(problem, 2)],
                                   rtol=1e-8)
        assert findings == []


def test_power_iteration_breaks_down_on_a_start_in_the_null_space() -> None:
    # A x_0 = 0: the iterate vanishes after one step; the pair it returns (0, e_0) is exact
    # but not the wanted one, so the missed-eigenvalue rule fires too.
    problem = problems.diagonal(np.arange(0.0, 20.0))
    x0 = torch.zeros(20, dtype=torch.float64)
    x0[0] = 1.0
    result = solve("power_iteration", problem.operator, 1, which="LM", X0=x0)
    assert result.status is SolveStatus.BREAKDOWN
    findings = diagnose(result, reference=problem.eigenvalues)
    finding = next(f for f in findings if f.rule == "breakdown")
    assert finding.severity == "error" and "vanished" in finding.message
    assert "missed_eigenvalue" in rules(findings)


def test_power_iteration_stagnates_on_plus_minus_pair() -> None:
    # |lambda_1| = |lambda_2| with opposite signs: power iteration cannot converge.
    problem = problems.diagonal(np.concatenate([[1.0, -1.0], np.linspace(0.5, 0.0, 48)]))
    result = solve("power_iteration", problem.operator, 1, which="LM", tol=1e-8, max_iter=300, seed=0)
    assert not result.status.ok
    findings = diagnose(result, reference=problem.eigenvalues)
    finding = next(f for f in findings if f.rule == "stagnation")
    assert not finding.evidence["at_rounding_floor"]
    assert "shift" in finding.suggestion.lower()


# --------------------------------------------------------------------------------------
# Rule logic on hand-made results
# --------------------------------------------------------------------------------------
def _record(iteration: int, ritz: list[float], residuals: list[float], *, loss: float | None = None,
            ghost: list[bool] | None = None, converged: int = 0, matvec: int | None = None) -> IterationRecord:
    return IterationRecord(
        solver="handmade", iteration=iteration, ritz_values=torch.tensor(ritz, dtype=torch.float64),
        residual_norms=torch.tensor(residuals, dtype=torch.float64), residuals_estimated=False,
        orthogonality_loss=loss, n_converged=converged, n_matvec=iteration if matvec is None else matvec,
        elapsed_s=0.001 * iteration, ghost_mask=None if ghost is None else torch.tensor(ghost))


def _result(values: list[float], vectors: torch.Tensor, residuals: list[float], status: SolveStatus,
            records: list[IterationRecord], *, solver: str = "handmade", message: str = "") -> EigenResult:
    k = len(values)
    return EigenResult(
        eigenvalues=torch.tensor(values, dtype=torch.float64), eigenvectors=vectors,
        residual_norms=torch.tensor(residuals, dtype=torch.float64),
        converged=torch.tensor([r <= 1e-8 * max(abs(v), 1.0) for r, v in zip(residuals, values)]),
        n_iter=len(records), n_matvec=len(records), elapsed_s=0.1, status=status, solver=solver, message=message,
        which="LA", tol=1e-8, history=tuple(records))


def test_ghost_rule_on_a_duplicated_value_with_parallel_vectors() -> None:
    n = 20
    e = torch.eye(n, dtype=torch.float64)
    vectors = torch.stack([e[0], e[0] * (1 - 1e-9) + 1e-9 * e[1], e[1]], dim=1)  # two copies of e_0
    records = [_record(t, [10.0, 10.0, 9.0], [1e-12, 1e-12, 1e-12], loss=0.9 if t > 3 else 1e-15, converged=3)
               for t in range(1, 6)]
    result = _result([10.0, 10.0, 9.0], vectors, [1e-12, 1e-12, 1e-12], SolveStatus.CONVERGED, records)
    reference = torch.tensor([10.0, 9.0, 8.0] + [1.0] * (n - 3), dtype=torch.float64)
    findings = diagnose(result, reference=reference)
    finding = next(f for f in findings if f.rule == "ghost_eigenvalues")
    assert finding.severity == "error"
    assert finding.evidence["ghosts_in_result"][0]["more_copies_than_exact"]
    assert "orthogonality_lost" not in rules(findings)  # the ghost rule tells the fuller story
    # a genuine double eigenvalue with orthogonal vectors is not a ghost
    honest = _result([10.0, 10.0, 9.0], e[:, :3], [1e-12] * 3, SolveStatus.CONVERGED,
                     [_record(1, [10.0, 10.0, 9.0], [1e-12] * 3, loss=1e-15, converged=3)])
    double_ref = torch.tensor([10.0, 10.0, 9.0] + [1.0] * (n - 3), dtype=torch.float64)
    assert "ghost_eigenvalues" not in rules(diagnose(honest, reference=double_ref))
    assert "ghost_eigenvalues" not in rules(diagnose(honest))


def test_ghost_rule_reads_solver_ghost_masks() -> None:
    e = torch.eye(10, dtype=torch.float64)
    records = [_record(1, [3.0, 2.0], [1e-3, 1e-3], loss=1e-15),
               _record(2, [3.0, 3.0], [1e-13, 1e-13], loss=0.5, ghost=[False, True]),
               _record(3, [3.0, 2.0], [1e-13, 1e-13], loss=0.5, ghost=[False, False], converged=2)]
    result = _result([3.0, 2.0], e[:, :2], [1e-13, 1e-13], SolveStatus.CONVERGED, records)
    finding = next(f for f in diagnose(result) if f.rule == "ghost_eigenvalues")
    assert finding.severity == "warning"  # none left in the final result
    assert finding.evidence["first_flagged_iteration"] == 2


def test_orthogonality_rule_without_ghosts() -> None:
    e = torch.eye(10, dtype=torch.float64)
    records = [_record(t, [3.0, 2.0], [1e-2 / t, 1e-2 / t], loss=10.0 ** (-16 + t)) for t in range(1, 12)]
    result = _result([3.0, 2.0], e[:, :2], [1e-3, 1e-3], SolveStatus.MAX_ITER, records)
    finding = next(f for f in diagnose(result) if f.rule == "orthogonality_lost")
    assert finding.evidence["first_above_sqrt_eps"] == 9  # 1e-7 > sqrt(eps) ~ 1.5e-8
    healthy = _result([3.0, 2.0], e[:, :2], [1e-13, 1e-13], SolveStatus.CONVERGED,
                      [_record(1, [3.0, 2.0], [1e-13, 1e-13], loss=1e-14, converged=2)])
    assert diagnose(healthy) == []


def test_breakdown_rule_on_a_reported_breakdown() -> None:
    e = torch.eye(10, dtype=torch.float64)
    records = [_record(1, [3.0, 2.0], [1e-1, 1e-1])]
    result = _result([3.0, 2.0], e[:, :2], [1e-1, 1e-1], SolveStatus.BREAKDOWN, records, solver="lobpcg",
                     message="Cholesky of the Gram matrix failed.")
    finding = next(f for f in diagnose(result) if f.rule == "breakdown")
    assert "ortho" in finding.suggestion and "Cholesky" in finding.message


def test_stagnation_needs_enough_iterations_and_a_flat_tail() -> None:
    e = torch.eye(10, dtype=torch.float64)
    flat = [_record(t, [3.0], [1e-3 * (1 + 0.01 * (t % 3))]) for t in range(1, 81)]
    result = _result([3.0], e[:, :1], [1e-3], SolveStatus.MAX_ITER, flat)
    assert "stagnation" in rules(diagnose(result))
    steady = [_record(t, [3.0], [0.9 ** t]) for t in range(1, 81)]
    result = _result([3.0], e[:, :1], [0.9 ** 80], SolveStatus.MAX_ITER, steady)
    assert "stagnation" not in rules(diagnose(result))
    short = [_record(t, [3.0], [1e-3]) for t in range(1, 20)]
    result = _result([3.0], e[:, :1], [1e-3], SolveStatus.MAX_ITER, short)
    assert "stagnation" not in rules(diagnose(result))


def test_unknown_rule_is_refused_and_order_is_by_severity() -> None:
    e = torch.eye(10, dtype=torch.float64)
    flat = [_record(t, [3.0], [1e-3]) for t in range(1, 81)]
    result = _result([3.0], e[:, :1], [1e-3], SolveStatus.MAX_ITER, flat)
    severities = [f.severity for f in diagnose(result)]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    with pytest.raises(ValueError, match="unknown rule"):
        diagnose(result, rules=["nope"])
