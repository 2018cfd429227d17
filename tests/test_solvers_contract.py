"""The contract every registered solver keeps, checked against exact spectra.

Parametrized over ``explorer.solvers.SOLVERS`` as it is at collection time, so a solver
registered later (lanczos, ...) is covered without touching this file. For each solver,
each ``which`` it declares (LA / SA / LM / BE), three problems with known spectra and
float32 / float64:

* ``diag_gap``: diagonal, n = 60, top eigenvalues 10, 9, 8, 7, bottom 0.1, 0.2, 0.3, 0.4
  (clear gaps at both ends, so every method applies);
* ``geometric``: dense Q diag(0.8^i) Q^T, n = 200 (fast decay: randomized methods apply);
* ``laplacian_1d``: sparse 1-D Dirichlet Laplacian, n = 100 (closed-form spectrum, small
  relative gaps at both ends).

A solver can declare the spectra its theory needs through ``SolverSpec.spectrum_assumption``:
"fast decay" (randomized: run only where the singular values decay geometrically) or
"gap" (power iteration: every wanted |lambda_(j+1) / lambda_j| <= 0.95). Other
combinations are skipped with the reason.

What is checked (tolerances from the dtype and the problem, never from the solver):

* status CONVERGED, all ``converged`` True, k pairs;
* eigenvalues against the exact ones, |theta_i - lambda_i| <= 2 max(tol, n eps) ||A||
  (why 2: a pair with residual r has an eigenvalue within ||r|| (symmetric Bauer-Fike), and
  ||r|| <= tol max(|theta|, sqrt(eps) ||A||) <= tol ||A||; a float32 operator also differs from
  the exact matrix by its rounding, <= eps ||A||_F <= eps sqrt(n) ||A|| <= n eps ||A||. Each
  term is at most max(tol, n eps) ||A||, hence the factor 2);
* eigenvectors: orthonormal to 100 sqrt(n) eps (rounding of Gram entries of n-vectors, with
  room for a few Rayleigh-Ritz steps), and close to the exact ones: sin angle <= 2 ||r_i|| /
  gap_i + sqrt(n) eps_64-size slack (Davis-Kahan sin theta theorem);
* reported residual norms equal a float64 recomputation ||A x - theta x|| to
  10 sqrt(n) eps ||A|| (they are *true* residuals, not estimates);
* the history: records' iterations strictly increasing within 1..n_iter, the last one at
  n_iter; n_matvec non-decreasing and at most ``result.n_matvec``. A solver without a
  ``ritz_every`` / ``record_every`` parameter records every iteration (``len(history) ==
  n_iter``); one with it (Lanczos, power iteration: by default a record at restarts or locks,
  near convergence, at the end and about every 20 ms) records every iteration with 1.
"""

from __future__ import annotations

import math

import pytest
import torch

from explorer import problems
from explorer.tracking.results import SolveStatus
from explorer.solvers import SOLVERS

# Solver tolerance per dtype: 10 sqrt(eps). The shared criterion is ||r|| <= tol max(|theta|,
# sqrt(eps) ||A||); near theta = 0 its floor tol sqrt(eps) ||A|| must stay above the rounding
# level of a computed residual (a few eps ||A||), so tol >= ~10 sqrt(eps): 1.5e-7 / 3.5e-3.
TOL = {dtype: 10 * math.sqrt(torch.finfo(dtype).eps) for dtype in (torch.float64, torch.float32)}
K = 4
WHICH_TESTED = ("LA", "SA", "LM", "BE")


def _diag_gap() -> problems.Problem:
    values = torch.cat([torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64),
                        torch.linspace(1.0, 5.0, 52, dtype=torch.float64),
                        torch.tensor([7.0, 8.0, 9.0, 10.0], dtype=torch.float64)])
    return problems.diagonal(values)


PROBLEMS = {
    "diag_gap": _diag_gap,
    "geometric": lambda: problems.prescribed_spectrum(200, "geometric", seed=0),
    "laplacian_1d": lambda: problems.laplacian_1d(100),
}
FAST_DECAY = {"geometric"}


def _cases() -> list:
    cases = []
    for name in sorted(SOLVERS):
        spec = SOLVERS[name]
        if spec.kind != "eigen":
            continue  # the SVD solvers have their own contract (test_svd_solver_contract)
        for which in spec.which:
            if which not in WHICH_TESTED:
                continue
            for problem in PROBLEMS:
                for dtype in (torch.float64, torch.float32):
                    cases.append(pytest.param(name, which, problem, dtype,
                                              id=f"{name}-{which}-{problem}-{str(dtype)[6:]}"))
    return cases


_CACHE: dict[str, problems.Problem] = {}


def _problem(name: str) -> problems.Problem:
    if name not in _CACHE:
        _CACHE[name] = PROBLEMS[name]()
    return _CACHE[name]


def _lm_gap_ratios(eigenvalues: torch.Tensor, k: int) -> list[float]:
    mags = torch.sort(eigenvalues.abs(), descending=True).values
    return [float(mags[j + 1] / mags[j]) for j in range(k)]


def _skip_reason(solver: str, which: str, problem: str) -> str | None:
    eigenvalues = _problem(problem).eigenvalues
    wanted = _problem(problem).reference(K, which)
    rounding = eigenvalues.numel() * torch.finfo(torch.float64).eps * float(eigenvalues.abs().max())
    if float(wanted.abs().min()) < rounding:
        # e.g. the smallest of 0.8^i, i < 200 (~1e-19): the assembled matrix does not determine them
        return f"the wanted {which} eigenvalues of {problem} lie below its rounding level {rounding:.0e}"
    assumption = SOLVERS[solver].spectrum_assumption
    if assumption == "fast decay" and problem not in FAST_DECAY:
        return f"{solver} assumes fast spectral decay; {problem} decays slowly"
    if assumption == "gap":
        ratios = _lm_gap_ratios(_problem(problem).eigenvalues, K)
        if max(ratios) > 0.95:
            return f"{solver} needs |lambda_(j+1)/lambda_j| <= 0.95; {problem} has {max(ratios):.4f}"
    return None


def _dense64(problem: problems.Problem) -> torch.Tensor:
    A = problem.operator.to(dtype=torch.float64).to_dense()
    return A.to_dense() if A.layout != torch.strided else A


@pytest.mark.parametrize(("solver", "which", "problem_name", "dtype"), _cases())
def test_solver_contract(solver: str, which: str, problem_name: str, dtype: torch.dtype) -> None:
    reason = _skip_reason(solver, which, problem_name)
    if reason:
        pytest.skip(reason)
    spec = SOLVERS[solver]
    problem = _problem(problem_name)
    op = problem.operator.to(dtype=dtype)
    n = op.shape[0]
    tol = TOL[dtype]
    eps = torch.finfo(dtype).eps
    exact = problem.reference(K, which)
    assert exact is not None
    norm_a = float(problem.eigenvalues.abs().max())

    result = spec.fn(op, K, which=which, tol=tol, seed=0)

    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert result.eigenvalues.shape == (K,) and result.eigenvectors.shape == (n, K)
    assert bool(result.converged.all())
    assert result.eigenvalues.dtype == dtype

    # eigenvalues: see the module docstring for the factor 2
    bound = 2 * max(tol, n * eps) * norm_a
    error = (result.eigenvalues.double() - exact).abs()
    assert float(error.max()) <= bound, (error, bound)

    # reported residuals are the true ones (float64 recomputation)
    A64 = _dense64(problem)
    X = result.eigenvectors.double()
    theta = result.eigenvalues.double()
    recomputed = torch.linalg.vector_norm(A64 @ X - X * theta, dim=0)
    slack = 10 * math.sqrt(n) * eps * norm_a
    assert torch.allclose(result.residual_norms.double(), recomputed, rtol=0, atol=slack), (
        result.residual_norms, recomputed)

    # eigenvectors: orthonormal, and near the exact eigenvectors (Davis-Kahan)
    gram = X.T @ X - torch.eye(K, dtype=torch.float64)
    assert float(gram.abs().max()) <= 100 * math.sqrt(n) * eps
    values, vectors = torch.linalg.eigh(A64)
    for i in range(K):
        j = int(torch.argmin((values - theta[i]).abs()))
        others = torch.cat([values[:j], values[j + 1:]])
        gap = float((others - values[j]).abs().min())
        x = X[:, i] / torch.linalg.vector_norm(X[:, i])
        sine = float(torch.linalg.vector_norm(x - vectors[:, j] * (vectors[:, j] @ x)))  # sin of the angle
        assert sine <= 2 * float(recomputed[i]) / gap + 100 * math.sqrt(n) * eps, (i, sine, gap)

    # history
    _check_history(solver, result)
    history = result.history
    matvecs = [record.n_matvec for record in history]
    assert matvecs == sorted(matvecs)
    assert not matvecs or matvecs[-1] <= result.n_matvec
    assert all(record.solver == solver for record in history)


def _every_step(solver: str) -> dict:
    """Solvers whose records may skip iterations declare ``ritz_every`` (Lanczos) or
    ``record_every`` (power iteration): the parameter that records every iteration, or {}."""
    return {p.name: 1 for p in SOLVERS[solver].params if p.name in ("ritz_every", "record_every")}


def _records_a_subset(solver: str) -> bool:
    return bool(_every_step(solver))


def _check_history(solver: str, result) -> None:  # noqa: ANN001
    iterations = [record.iteration for record in result.history]
    if not _records_a_subset(solver):
        assert iterations == list(range(1, result.n_iter + 1))
        return
    assert all(1 <= it <= result.n_iter for it in iterations)
    assert all(b > a for a, b in zip(iterations, iterations[1:]))
    assert (iterations[-1] if iterations else 0) == result.n_iter


@pytest.mark.parametrize("solver", sorted(name for name in SOLVERS if _records_a_subset(name)))
def test_ritz_every_one_records_every_iteration(solver: str) -> None:
    spec = SOLVERS[solver]
    result = spec.fn(problems.laplacian_1d(100).operator, 3, which=spec.which[0], tol=1e-8, seed=0,
                     max_iter=10**5, **_every_step(solver))
    assert result.status is SolveStatus.CONVERGED
    assert [record.iteration for record in result.history] == list(range(1, result.n_iter + 1))


def test_the_registry_is_read_at_collection_time() -> None:
    """Every registered solver got contract cases (guards against an empty or stale list)."""
    covered = {param.values[0] for param in _cases()} | {param.values[0] for param in _svd_cases()}
    assert covered == set(SOLVERS)
    assert {"lobpcg", "power_iteration", "randomized_svd", "golub_kahan"} <= covered


# -- the SVD solvers (SolverSpec.kind == "svd") ------------------------------------------------
# Singular values with clear gaps at both ends (the diag_gap values) on 90 x 60 and 60 x 90
# matrices U diag(s) V^T with Haar U, V (both orientations), and the sparse 61 x 60 difference
# matrix, whose singular values 2 sin(i pi / 122) are known in closed form.
def _gap_values() -> torch.Tensor:
    return _diag_gap().eigenvalues


SVD_PROBLEMS = {
    "svd_gap_tall": lambda: problems.prescribed_singular_values(90, 60, values=_gap_values(), seed=0),
    "svd_gap_wide": lambda: problems.prescribed_singular_values(60, 90, values=_gap_values(), seed=1),
    "gradient_1d": lambda: problems.gradient_1d(60),
}
SVD_WHICH = ("LA", "SA")


def _svd_cases() -> list:
    cases = []
    for name in sorted(SOLVERS):
        spec = SOLVERS[name]
        if spec.kind != "svd":
            continue
        for which in spec.which:
            if which not in SVD_WHICH:
                continue
            for problem in SVD_PROBLEMS:
                for dtype in (torch.float64, torch.float32):
                    cases.append(pytest.param(name, which, problem, dtype,
                                              id=f"{name}-{which}-{problem}-{str(dtype)[6:]}"))
    return cases


def _svd_problem(name: str) -> problems.Problem:
    key = "svd:" + name
    if key not in _CACHE:
        _CACHE[key] = SVD_PROBLEMS[name]()
    return _CACHE[key]


@pytest.mark.parametrize(("solver", "which", "problem_name", "dtype"), _svd_cases())
def test_svd_solver_contract(solver: str, which: str, problem_name: str, dtype: torch.dtype) -> None:
    """The SVD analogue of ``test_solver_contract``, through the augmented symmetric matrix
    H = [[0, A], [A^T, 0]], whose eigenvalues are +-sigma_i (and |m - n| zeros): a triplet with
    residual r = sqrt(||A v - sigma u||^2 + ||A^T u - sigma v||^2) (unit u, v) is an eigenpair of
    H with residual r / sqrt(2), so

    * some singular value lies within r / sqrt(2) <= tol ||A|| of sigma (Bauer-Fike), plus the
      float32 rounding of A, <= eps ||A||_F <= N eps ||A|| (N = min(m, n)): the values are within
      2 max(tol, N eps) ||A|| of the exact ones;
    * the pair [u; v] / sqrt(2) is within sin angle <= (r / sqrt(2)) / gap of the exact one,
      gap = the distance of sigma_j to H's other eigenvalues (Davis-Kahan), compared with
      the float64 dense SVD's vectors (sign-free);
    * U and V are orthonormal to 100 sqrt(N) eps, and the reported residuals equal a float64
      recomputation to 10 sqrt(N) eps ||A||.
    """
    spec = SOLVERS[solver]
    problem = _svd_problem(problem_name)
    op = problem.operator.to(dtype=dtype)
    m, n = op.shape
    N = min(m, n)
    tol = TOL[dtype]
    eps = torch.finfo(dtype).eps
    exact = problem.reference(K, which)
    assert exact is not None
    norm_a = float(problem.singular_values.max())

    result = spec.fn(op, K, which=which, tol=tol, seed=0)

    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert result.singular_values.shape == (K,) and result.V.shape == (n, K) and result.U.shape == (m, K)
    assert bool(result.converged.all())
    assert result.singular_values.dtype == dtype

    bound = 2 * max(tol, N * eps) * norm_a
    error = (result.singular_values.double() - exact).abs()
    assert float(error.max()) <= bound, (error, bound)

    A64 = _dense64(problem)
    U, V, S = result.U.double(), result.V.double(), result.singular_values.double()
    recomputed = torch.sqrt(torch.linalg.vector_norm(A64 @ V - U * S, dim=0) ** 2
                            + torch.linalg.vector_norm(A64.T @ U - V * S, dim=0) ** 2)
    slack = 10 * math.sqrt(N) * eps * norm_a
    assert torch.allclose(result.residual_norms.double(), recomputed, rtol=0, atol=slack), (
        result.residual_norms, recomputed)

    for X in (U, V):
        gram = X.T @ X - torch.eye(K, dtype=torch.float64)
        assert float(gram.abs().max()) <= 100 * math.sqrt(N) * eps

    Ue, Se, Vhe = torch.linalg.svd(A64, full_matrices=False)
    eigs_h = torch.cat([Se, -Se] + ([torch.zeros(1, dtype=torch.float64)] if m != n else []))
    for i in range(K):
        j = int(torch.argmin((Se - S[i]).abs()))
        others = torch.cat([eigs_h[:j], eigs_h[j + 1:]])
        gap = float((others - Se[j]).abs().min())
        z = torch.cat([U[:, i], V[:, i]]) / math.sqrt(2.0)
        z_exact = torch.cat([Ue[:, j], Vhe[j]]) / math.sqrt(2.0)
        sine = float(torch.linalg.vector_norm(z - z_exact * (z_exact @ z)))
        assert sine <= float(recomputed[i]) / math.sqrt(2.0) / gap + 100 * math.sqrt(N) * eps, (i, sine, gap)

    history = result.history
    assert len(history) == result.n_iter
    assert [record.iteration for record in history] == list(range(1, result.n_iter + 1))
    matvecs = [record.n_matvec for record in history]
    assert matvecs == sorted(matvecs)
    assert not matvecs or matvecs[-1] <= result.n_matvec
    assert all(record.solver == solver for record in history)


def _scaled_problem(dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, dtype=torch.float64, generator=generator))
    lam = 0.7 ** torch.arange(60, dtype=torch.float64)  # decays: every method applies
    A = ((Q * lam) @ Q.T).to(dtype)
    return (A + A.T) / 2


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize(("dtype", "exponent"), [(torch.float64, 700), (torch.float64, -700), (torch.float64, 60),
                                                 (torch.float32, 70), (torch.float32, -70), (torch.float32, 20)])
def test_scaling_the_matrix_by_a_power_of_two_only_scales_the_answer(solver: str, dtype: torch.dtype,
                                                                    exponent: int) -> None:
    """Every test inside a solver is relative to ||A||, so 2^e A takes the same steps as A and
    the values, residuals and records scale exactly (power-of-two scaling is exact). Past
    2^±500 (float64) / 2^±63 (float32) the squares inside norms overflow or underflow, so
    the iterative solvers then run on A / 2^e' (``ProductUnits``); before, Lanczos and the
    randomized method returned CONVERGED with wrong values at 2^-700 and power iteration
    stopped with "A x = 0". Dense eigh (LAPACK scales internally) is compared to rounding."""
    spec = SOLVERS[solver]
    A = _scaled_problem(dtype)
    scale = math.ldexp(1.0, exponent)
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    kwargs = dict(which=spec.which[0], tol=tol, seed=0)
    reference = spec.fn(A, 3, **kwargs)
    scaled = spec.fn(A * scale, 3, **kwargs)
    assert scaled.status is reference.status is SolveStatus.CONVERGED, scaled.status_message
    assert (scaled.n_iter, scaled.n_matvec) == (reference.n_iter, reference.n_matvec)
    if spec.default_max_iter == 1:  # eigh: LAPACK's own scaling rounds
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(scaled.eigenvalues / scale, reference.eigenvalues, rtol=10 * eps, atol=0.0)
        return
    assert torch.equal(scaled.eigenvalues / scale, reference.eigenvalues)
    assert torch.equal(scaled.residual_norms / scale, reference.residual_norms)
    # (records that follow time may fall on different iterations in the two runs)
    theirs = {record.iteration: record for record in reference.history}
    common = [record for record in scaled.history if record.iteration in theirs]
    assert common and common[-1].iteration == reference.n_iter
    for mine in common:
        assert torch.equal(mine.ritz_values / scale, theirs[mine.iteration].ritz_values)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("after", [0, 3, 15])
@pytest.mark.parametrize("k", [1, 3])
def test_nan_or_inf_from_the_operator_ends_in_breakdown_with_a_message(solver: str, bad: float, after: int,
                                                                        k: int) -> None:
    """A matrix-free operator that starts returning NaN / Inf (an HVP that overflowed) ends the
    solve with BREAKDOWN and a message that says so, never an exception, and nothing NaN is
    called converged. Before: eigh returned NaN values with status CONVERGED, Lanczos, the LOBPCG
    block engine and the randomized method raised LinAlgError from eigh, Lanczos with NaN ran
    10000 'breakdown' steps, LOBPCG's vector path blamed the tolerance."""
    from explorer.operators import CallableOperator

    d = torch.arange(1.0, 61.0, dtype=torch.float64)
    calls = [0]

    def product(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        y = d * x
        if calls[0] > after:
            y[5] = bad
        return y

    spec = SOLVERS[solver]
    result = spec.fn(CallableOperator(product, 60), k, which=spec.which[0], tol=1e-8, seed=0)
    assert result.status is SolveStatus.BREAKDOWN, (result.status, result.message)
    assert "NaN or Inf" in result.message
    finite = torch.isfinite(result.eigenvalues) & torch.isfinite(result.residual_norms)
    assert not bool((result.converged & ~finite).any())
    _check_history(solver, result)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("tol", [1e-300, 1e-6, 0.5])
def test_status_converged_exactly_when_every_pair_converged(solver: str, tol: float) -> None:
    """CONVERGED means every returned pair meets tol, and a run whose pairs all meet it says
    so. Before, dense eigh reported CONVERGED with ``converged`` all False at a tol below its
    rounding level (now BREAKDOWN with a message that says to loosen tol)."""
    spec = SOLVERS[solver]
    result = spec.fn(problems.laplacian_1d(60).operator, 3, which=spec.which[0], tol=tol, seed=0, max_iter=300)
    assert (result.status is SolveStatus.CONVERGED) == bool(result.converged.all()), (result.status, result.message)
    if result.status is not SolveStatus.CONVERGED:
        assert result.message


def test_eigh_measures_its_threshold_floor_on_the_whole_spectrum() -> None:
    """The floor of ``residual_threshold`` is sqrt(eps) ||A||. eigh took ||A|| from the k values
    it returned: for the smallest values of a geometric spectrum (1 ... 0.9^299 ~ 2e-14) in
    float32 the floor vanished, and residuals of 1.8e-7 (eigh's rounding level, below the
    floor with ||A|| = 1) were reported as BREAKDOWN, "loosen tol"."""
    from explorer.solvers import eigh

    op = problems.prescribed_spectrum(300, "geometric", seed=1, decay=0.9).operator.to(dtype=torch.float32)
    tol = 10 * math.sqrt(torch.finfo(torch.float32).eps)
    result = eigh(op, 6, which="SA", tol=tol)
    floor = tol * math.sqrt(torch.finfo(torch.float32).eps) * 1.0  # ||A|| = 1
    assert float(result.residual_norms.max()) <= floor
    assert result.status is SolveStatus.CONVERGED, result.message


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_a_run_that_hits_max_iter_says_how_far_it_got(solver: str) -> None:
    """An engineer debugging a solve that does not converge gets the count of pairs that met
    tol and a hint, not just 'max_iter reached' (Lanczos and LOBPCG said only their notes)."""
    spec = SOLVERS[solver]
    result = spec.fn(problems.laplacian_1d(200).operator, 3, which=spec.which[0], tol=1e-12, seed=0, max_iter=30)
    if result.status is SolveStatus.MAX_ITER:
        assert f"{int(result.converged.sum())} of 3 pairs" in result.message


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("exponent", [600, -600])
def test_only_the_directions_of_X0_matter(solver: str, exponent: int) -> None:
    """X0 and 2^e X0 give the same run. Before, power iteration stopped with "A x = 0" at a
    1e200-sized start (the norm overflowed) and the randomized method let the start set the
    units of its first product and reported wrong values as CONVERGED (error 0.31)."""
    spec = SOLVERS[solver]
    A = problems.laplacian_1d(60).operator
    X0 = torch.randn(60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kwargs = dict(which=spec.which[0], seed=0, tol=1e-6)
    reference = spec.fn(A, 3, X0=X0, **kwargs)
    scaled = spec.fn(A, 3, X0=X0 * math.ldexp(1.0, exponent), **kwargs)
    assert scaled.status is reference.status and (scaled.n_iter, scaled.n_matvec) == (reference.n_iter,
                                                                                       reference.n_matvec)
    assert torch.equal(scaled.eigenvalues, reference.eigenvalues)
