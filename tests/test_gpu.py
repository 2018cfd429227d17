"""The CUDA path: every registered solver on a GPU agrees with dense eigh on the CPU.

Skipped cleanly on machines without CUDA (CI has none); run on a lent GPU machine.
"""

from __future__ import annotations

import math

import pytest
import scipy.sparse as sp
import torch

from explorer.operators import as_operator
from explorer.tracking.results import SolveStatus
from explorer.solvers import SOLVERS, solve

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _laplacian_1d(n: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def _geometric(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R))
    lam = 0.8 ** torch.arange(n, dtype=torch.float64)
    A = (Q * lam) @ Q.T
    return 0.5 * (A + A.T), torch.sort(lam).values


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_solver_on_cuda_matches_cpu_reference(name, dtype):
    spec = SOLVERS[name]
    A, lam = _geometric(300)
    op = as_operator(A).to("cuda", dtype)
    which = "LA" if "LA" in spec.which else spec.which[0]
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    k = 4
    result = solve(name, op, k, which=which, tol=tol, seed=0)
    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert result.eigenvectors.device.type == "cuda"
    expected = torch.sort(lam, descending=True).values[:k]
    got = torch.sort(result.eigenvalues.double().cpu(), descending=True).values
    # Eigenvalue error of a converged pair <= residual^2 / gap (Saad, Thm 3.8); with the
    # relative tolerance that is <= tol^2 |lambda|^2 / gap, far below tol * |lambda|. We allow
    # tol * |lambda| plus float rounding of ||A|| (n * eps), independent of the solver.
    eps = torch.finfo(dtype).eps
    bound = tol * expected.abs() + 10 * math.sqrt(300) * eps
    assert torch.all((got - expected).abs() <= bound), (got, expected)


def test_sparse_operator_on_cuda_matches_cpu():
    op_cpu = as_operator(_laplacian_1d(500))
    op_gpu = op_cpu.to("cuda")
    x = torch.randn(500, 3, dtype=torch.float64)
    torch.testing.assert_close(op_gpu.matmat(x.cuda()).cpu(), op_cpu.matmat(x))


@pytest.mark.parametrize("shape", [(400, 150), (150, 400)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_golub_kahan_on_cuda_matches_the_known_singular_values(shape, dtype):
    from explorer.problems import prescribed_singular_values
    from explorer.solvers import golub_kahan

    problem = prescribed_singular_values(*shape, "geometric", seed=0)
    op = problem.operator.to("cuda", dtype)
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    result = golub_kahan(op, 4, tol=tol, seed=0)
    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert result.U.device.type == "cuda" and result.V.device.type == "cuda"
    eps = torch.finfo(dtype).eps
    error = (result.singular_values.double().cpu() - problem.reference(4, "LA")).abs()
    assert bool((error <= 2 * max(tol, min(shape) * eps)).all()), error  # ||A|| = 1
