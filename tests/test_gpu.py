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


# -- the benches on CUDA (the matrix bench in this process; accuracy in float64 on the CPU) --------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_bench_on_cuda(dtype: torch.dtype) -> None:
    import numpy as np

    from explorer.bench import matrix as bench

    problems = bench.make_problems(["laplace2d_N20"], cases=[(4, "LA")])
    lines: list[str] = []
    table = bench.run_benchmark(problems, ("lanczos", "lobpcg", "torch_lobpcg", "arpack"), cap_s=60.0,
                                overhead_max_s=0.0, repeat_below_s=0.0, device="cuda", dtype=dtype, log=lines.append)
    rows = table.set_index("solver")
    for solver in ("lanczos",):  # (lobpcg: test_lobpcg_row_on_cuda)
        row = rows.loc[solver]
        assert row["status"] == "done" and row["ok"], (solver, row["note"])
        # tol 1e-6 (float64) / 1e-5 (float32) bounds |theta - lambda| <= tol |theta|, plus rounding
        assert row["eig_err"] <= bench.default_tol(dtype) + 20 * torch.finfo(dtype).eps
        assert 0 < row["peak_gb"] < 1 and row["grow_gb"] >= 0  # torch.cuda.max_memory_allocated
    if dtype == torch.float64:  # (in float32 torch.lobpcg stalls above tol 1e-5 here and runs to the cap)
        assert rows.loc["torch_lobpcg", "status"] == "done" and rows.loc["torch_lobpcg", "ok"]
    assert "on the CPU (scipy)" in rows.loc["arpack", "note"]
    ran = table[table["status"] == "done"]
    assert np.isfinite(ran["overhead"]).all() and (ran["overhead"] > 0).all()
    assert any("on cuda" in line and "t_mv" in line for line in lines)


def test_lobpcg_row_on_cuda() -> None:
    from explorer.bench import matrix as bench

    problems = bench.make_problems(["laplace2d_N20"], cases=[(4, "LA")])
    row = bench.run_benchmark(problems, ("lobpcg",), cap_s=60.0, overhead_max_s=0.0, repeat_below_s=0.0,
                              device="cuda").iloc[0]
    assert row["status"] == "done" and row["ok"], row["note"]


def test_matrix_bench_cli_on_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    from explorer.bench import matrix as bench

    assert bench.main(["--device", "cuda", "--dtype", "float32", "--problems", "laplace2d_N10",
                       "--solvers", "lanczos", "--cap", "30"]) == 0
    out = capsys.readouterr().out
    assert "on cuda" in out and "no fork" in out and "float32" in out and "cap 30 s wall" in out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hessian_bench_on_cuda_with_a_tiny_transformer(dtype: torch.dtype) -> None:
    from explorer.bench import hessian as hbench

    tol = 1e-6 if dtype == torch.float64 else 1e-4
    report = hbench.run_benchmark(k=3, tol=tol, seeds=(0,), verbose=False, model="transformer:2k", device="cuda",
                                  dtype=dtype, peers=("lanczos", "torch_lobpcg", "eigsh"), cap_s=120.0)
    assert report["setup"]["clock"] == "wall" and "cuda" in report["setup"]["device"]
    assert report["reference"]["top"] is not None  # n = 2040: the dense float64 reference on the CPU
    for row in report["summary"]:
        assert row["status"] == "done", row
        # a converged pair: |theta - lambda| <= ||r|| <= tol |theta|; float32 HVPs add ~1e-6
        assert row["max_rel_error"] <= tol + (0 if dtype == torch.float64 else 1e-5), row
        assert row["max_rel_residual"] <= 1.5 * tol


def test_generated_transformer_hessian_on_cuda_matches_cpu() -> None:
    from explorer.bench.models import transformer
    from explorer.models import HessianOperator

    model, data = transformer(20_000, dtype=torch.float64)
    cpu = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    gpu = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64, device="cuda")
    v = torch.randn(cpu.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    hv = gpu.matvec(v.cuda())
    assert hv.device.type == "cuda"
    torch.testing.assert_close(hv.cpu(), cpu.matvec(v), rtol=1e-9, atol=1e-12)


def test_an_operator_on_cuda_reports_its_tensors_device() -> None:
    op = as_operator(_laplacian_1d(50)).to("cuda")
    assert op.device == op.matrix.device == torch.device("cuda", torch.cuda.current_device())
    assert op.to("cuda") is op  # already there: no copy
