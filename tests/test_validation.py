"""Every rejected input, for every registered solver: the error names the parameter and the rule.

Dtype policy (decided here, implemented by ``as_operator`` / ``validate_common``):

* float32 and float64 are solved in that precision;
* integer and float16 *tensors* are promoted to float64 (lossless for the values a user
  types; float16 has no LAPACK/BLAS kernels on the CPU), so they are accepted;
* complex input is rejected with TypeError (these solvers are for real symmetric matrices);
* a ``LinearOperator`` that declares another dtype (say float16) is rejected with TypeError,
  since we cannot convert a matrix-free operator behind its back.

Devices: solvers run where the operator lives and take no device argument; device names
are validated where the app turns text into a device (``explorer.operators.devices.parse_device``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch

from explorer.operators.devices import parse_device
from explorer.operators import CallableOperator, NotSymmetricError
from explorer.solvers import SOLVERS, solve

N = 20
SOLVER_NAMES = sorted(SOLVERS)


def _spd(n: int = N) -> torch.Tensor:
    return torch.diag(torch.arange(1.0, n + 1.0, dtype=torch.float64))


def _nonsymmetric() -> torch.Tensor:
    A = _spd()
    A[0, 5] = 3.0
    return A


def _with_nan() -> torch.Tensor:
    A = _spd()
    A[2, 2] = float("nan")
    return A


def _with_inf() -> torch.Tensor:
    A = _spd()
    A[3, 4] = A[4, 3] = float("inf")
    return A


# (id, operator factory, k, extra kwargs, exception, match)
CASES: list[tuple[str, Callable[[], Any], Any, dict, type[Exception], str]] = [
    ("non-square", lambda: torch.ones(N, N - 1, dtype=torch.float64), 2, {}, ValueError, "must be square"),
    ("non-symmetric", _nonsymmetric, 2, {}, NotSymmetricError, "not symmetric"),
    ("nan", _with_nan, 2, {}, ValueError, "NaN or Inf"),
    ("inf", _with_inf, 2, {}, ValueError, "NaN or Inf"),
    ("empty", lambda: torch.zeros(0, 0, dtype=torch.float64), 1, {}, ValueError, "empty"),
    ("not-a-matrix", lambda: "A", 2, {}, TypeError, "must be a torch tensor"),
    ("3-d", lambda: torch.ones(2, 3, 3, dtype=torch.float64), 1, {}, ValueError, "2-D matrix"),
    ("k=0", _spd, 0, {}, ValueError, r"`k` must satisfy 1 <= k"),
    ("k<0", _spd, -3, {}, ValueError, r"`k` must satisfy 1 <= k"),
    ("k>n", _spd, N + 1, {}, ValueError, r"`k` must satisfy 1 <= k <= \d+, got k=21"),
    ("k-float", _spd, 2.5, {}, TypeError, "`k` must be an integer"),
    ("k-bool", _spd, True, {}, TypeError, "`k` must be an integer"),
    ("tol=0", _spd, 2, {"tol": 0.0}, ValueError, "`tol` must be a positive finite number"),
    ("tol<0", _spd, 2, {"tol": -1e-6}, ValueError, "`tol` must be a positive finite number"),
    ("tol=nan", _spd, 2, {"tol": float("nan")}, ValueError, "`tol` must be a positive finite number"),
    ("max_iter=0", _spd, 2, {"max_iter": 0}, ValueError, "`max_iter` must be a positive integer"),
    ("max_iter<0", _spd, 2, {"max_iter": -5}, ValueError, "`max_iter` must be a positive integer"),
    ("max_iter-float", _spd, 2, {"max_iter": 10.5}, TypeError, "`max_iter` must be an integer"),
    ("which-unknown", _spd, 2, {"which": "XX"}, ValueError, "`which` must be one of"),
    ("which-lowercase-garbage", _spd, 2, {"which": "largest"}, ValueError, "`which` must be one of"),
    ("which-not-a-string", _spd, 2, {"which": 1}, ValueError, "`which` must be one of"),
    ("complex", lambda: _spd().to(torch.complex128), 2, {}, TypeError, "complex"),
    ("float16-operator", lambda: CallableOperator(lambda x: x, N, dtype=torch.float16), 2, {}, TypeError,
     "float32 or float64"),
    ("X0-shape", _spd, 2, {"X0": torch.ones(N + 1, 2, dtype=torch.float64)}, ValueError, "`X0` must have shape"),
    ("X0-nan", _spd, 2, {"X0": torch.full((N, 2), float("nan"), dtype=torch.float64)}, ValueError,
     "`X0` contains NaN"),
]


def _call(name: str, make: Callable[[], Any], k: Any, kwargs: dict) -> Any:
    return SOLVERS[name].fn(make(), k, seed=0, **kwargs)


@pytest.mark.parametrize("name", SOLVER_NAMES)
@pytest.mark.parametrize(("case", "make", "k", "kwargs", "error", "match"), CASES, ids=[c[0] for c in CASES])
def test_rejected_input(name: str, case: str, make: Callable[[], Any], k: Any, kwargs: dict,
                        error: type[Exception], match: str) -> None:
    if SOLVERS[name].default_max_iter == 1 and ("X0" in kwargs or "max_iter" in kwargs):
        pytest.skip(f"{name} does not iterate: it documents max_iter and X0 as accepted and ignored")
    if SOLVERS[name].kind == "svd" and case in ("non-square", "non-symmetric"):
        pytest.skip(f"{name} computes singular values of any m x n matrix (tests/test_svd.py solves these)")
    with pytest.raises(error, match=match):
        _call(name, make, k, kwargs)


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_which_the_solver_does_not_offer(name: str) -> None:
    missing = [w for w in ("LA", "SA", "LM", "BE") if w not in SOLVERS[name].which]
    # by shift (power iteration); scipy's svds name for the largest singular values (golub_kahan); documented
    accepted_anyway = {"power_iteration": {"LA", "SA"}, "golub_kahan": {"LM"}}.get(name, set())
    missing = [w for w in missing if w not in accepted_anyway]
    if not missing:
        pytest.skip(f"{name} offers every which")
    with pytest.raises(ValueError, match=rf"`which` must be one of .* for {name}|`which` must be one of"):
        SOLVERS[name].fn(_spd(), 2, which=missing[0], seed=0)


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_B_only_where_supported(name: str) -> None:
    spec = SOLVERS[name]
    B = torch.eye(N, dtype=torch.float64)
    if not spec.supports_B:
        # The shared signature has B "where supported": a solver may omit the parameter (Python's
        # TypeError names it) or accept it and explain (validate_common's ValueError with a hint).
        with pytest.raises((ValueError, TypeError),
                           match="does not solve generalized problems|unexpected keyword argument 'B'"):
            spec.fn(_spd(), 2, B=B, seed=0)
    else:
        with pytest.raises(ValueError, match="`B` must have the same shape"):
            spec.fn(_spd(), 2, B=torch.eye(N + 1, dtype=torch.float64), seed=0)
        with pytest.raises(NotSymmetricError, match="not symmetric"):
            spec.fn(_spd(), 2, B=_nonsymmetric(), seed=0)


@pytest.mark.parametrize("name", SOLVER_NAMES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16])
def test_integer_and_half_tensors_are_promoted_to_float64(name: str, dtype: torch.dtype) -> None:
    A = torch.diag(torch.arange(1, N + 1)).to(dtype)
    spec = SOLVERS[name]
    result = spec.fn(A, 2, which=spec.which[0], seed=0, tol=1e-6)
    assert result.eigenvalues.dtype == torch.float64


def test_registry_solve_checks_extra_parameters() -> None:
    with pytest.raises(TypeError, match="unexpected parameter `block`"):
        solve("lobpcg", _spd(), 2, block=4)
    with pytest.raises(ValueError, match="`method` must be one of"):
        solve("lobpcg", _spd(), 2, method="fast")
    with pytest.raises(ValueError, match="`momentum` must be <= 0.999"):
        solve("power_iteration", _spd(), 1, momentum=1.5)
    with pytest.raises(ValueError, match="`n_oversamples` must be >= 0"):
        solve("randomized_svd", _spd(), 2, n_oversamples=-2)
    with pytest.raises(ValueError, match="unknown solver 'arnoldi'"):
        solve("arnoldi", _spd(), 2)


def test_every_param_has_help_a_student_can_read() -> None:
    for spec in SOLVERS.values():
        for param in spec.params:
            assert len(param.help.split()) >= 8, (spec.name, param.name)
            if param.kind == "choice":
                assert param.default in param.choices


@pytest.mark.parametrize(("device", "match"), [("bogus", "not a device name"), ("cuda:7", "not available"),
                                                ("", "not a device name")])
def test_bad_device_strings(device: str, match: str) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(ValueError, match=match):
        parse_device(device)


@pytest.mark.parametrize("name", SOLVER_NAMES)
def test_numpy_scalars_are_accepted_like_python_numbers(name: str) -> None:
    """k, max_iter and tol computed with numpy (np.int64, np.float32) are numbers like any other:
    they used to be refused with "`k` must be an integer, got np.int64(2)"."""
    spec = SOLVERS[name]
    which = spec.which[0]
    result = spec.fn(_spd(), np.int64(2), which=which, seed=0, tol=np.float32(1e-6), max_iter=np.int64(2000))
    reference = solve("eigh", _spd(), 2, which=which).eigenvalues
    assert result.eigenvalues.shape == (2,)
    # diag(1..20): tol 1e-6 relative residual bounds each value's error by 1e-6 |lambda| (plus rounding)
    torch.testing.assert_close(result.eigenvalues, reference, rtol=2e-6, atol=0.0)
    for bad in (np.float64(2.5), np.bool_(True)):
        with pytest.raises(TypeError, match="`k` must be an integer"):
            spec.fn(_spd(), bad, which=which, seed=0)


def test_one_integer_rule_for_solvers_forms_and_problems() -> None:
    from explorer import problems
    from explorer.solvers._common import check_int

    assert check_int("k", np.int32(3)) == 3 and check_int("k", 3.0) == 3
    with pytest.raises(TypeError, match=r"`k` must be an integer, got 3.5 \(float\)"):
        check_int("k", 3.5)
    with pytest.raises(ValueError, match="`k` must be between 1 and 10, got k=11; lower it"):
        check_int("k", 11, maximum=10, hint="lower it")
    assert SOLVERS["lanczos"].param("block_size").validate(np.int64(3)) == 3
    assert problems.laplacian_1d(np.int64(6)).n == 6
    assert solve("lanczos", _spd(), 2, block_size=np.int64(1), max_basis=np.int16(12)).status.name == "CONVERGED"


@pytest.mark.parametrize("name", [n for n in SOLVER_NAMES if SOLVERS[n].default_max_iter != 1])
@pytest.mark.parametrize(("seed", "error", "match"), [(3.5, TypeError, "`seed` must be an integer, got 3.5"),
                                                      (-1, ValueError, "`seed` must be >= 0, got seed=-1"),
                                                      ("7", TypeError, "`seed` must be an integer")])
def test_a_seed_that_is_not_a_whole_number_is_refused_not_truncated(name: str, seed: Any, error: type,
                                                                    match: str) -> None:
    with pytest.raises(error, match=match):
        SOLVERS[name].fn(_spd(), 2, which=SOLVERS[name].which[0], seed=seed)


def test_a_choice_may_also_take_whole_numbers_and_shows_labels() -> None:
    """Lanczos's ``ritz_every`` is "auto" or a step count: the form offers the listed choices
    (with labels, "record every step" for 1); code may pass any whole number >= 1."""
    spec = SOLVERS["lanczos"].param("ritz_every")
    assert spec.kind == "choice" and spec.default == "auto"
    assert [spec.validate(v) for v in ("auto", 1, 7, np.int64(3), 10.0)] == ["auto", 1, 7, 3, 10]
    assert spec.label(1) == "record every step" and spec.label(3) == "3"
    for bad, error in ((True, ValueError), ("often", ValueError), (0, ValueError), (2.5, TypeError)):
        with pytest.raises(error, match="ritz_every"):
            spec.validate(bad)
    assert SOLVERS["lanczos"].param("reorthogonalization").label("full") == "full"  # no labels: the value
    with pytest.raises(ValueError, match="must be one of"):
        SOLVERS["lanczos"].param("reorthogonalization").validate(1)
