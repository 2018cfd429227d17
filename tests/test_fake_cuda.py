"""Device mixing on the CUDA path, found on the CPU: every solver and the matrix bench on a fake
CUDA device (tests/fake_cuda.py: CPU memory that reports cuda:0 and refuses to mix with CPU
arrays or to become numpy, as CUDA does). The real device runs are in tests/test_gpu.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from fake_cuda import FakeCudaTensor, fake_cuda  # noqa: E402

from explorer.operators import as_operator  # noqa: E402
from explorer.solvers import SOLVERS, solve  # noqa: E402


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    if torch.cuda.is_available():
        pytest.skip("a real GPU is here: tests/test_gpu.py covers it")
    with fake_cuda(monkeypatch):
        yield


def _matrix(n: int = 120, seed: int = 0, geometric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Q diag(lam) Q^T, Haar Q; lam ascending, on [1, 2] or 0.8^i (a decay the randomized SVD needs)."""
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R))
    lam = (torch.sort(0.8 ** torch.arange(n, dtype=torch.float64)).values if geometric
           else torch.linspace(1.0, 2.0, n, dtype=torch.float64))
    return (Q * lam) @ Q.T, lam


def test_the_harness_refuses_what_cuda_refuses(cuda) -> None:  # noqa: ANN001
    x = torch.randn(4).to("cuda")
    assert isinstance(x, FakeCudaTensor) and x.device == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="same device"):
        x + torch.ones(4)
    with pytest.raises(TypeError, match="cuda:0 device type tensor to numpy"):
        np.asarray(x)
    assert isinstance(x * torch.tensor(2.0), FakeCudaTensor)  # a 0-d CPU tensor is a scalar, as on CUDA
    assert type(x.cpu()) is torch.Tensor and isinstance(torch.zeros(2, device="cuda"), FakeCudaTensor)


def test_operators_on_cuda_report_the_tensors_device(cuda) -> None:  # noqa: ANN001
    A, _ = _matrix(20)
    op = as_operator(A).to("cuda")
    assert op.device == torch.device("cuda", 0) == op.matrix.device  # "cuda" has its index filled in
    assert op.to("cuda") is op and op.to("cuda:0") is op  # already there: no copy


# Solvers known to mix devices (none now; lobpcg's block path did until its small projected
# matrices, kept on the CPU in float64, were moved to the rows' device where they meet them).
_BROKEN: dict[str, str] = {}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_runs_on_cuda(cuda, name: str, dtype: torch.dtype, request: pytest.FixtureRequest) -> None:  # noqa: ANN001
    if name in _BROKEN:
        request.applymarker(pytest.mark.xfail(reason=_BROKEN[name], raises=RuntimeError, strict=True))
    spec = SOLVERS[name]
    A, lam = _matrix(geometric=True)
    op = as_operator(A).to("cuda", dtype)
    which = "LA" if "LA" in spec.which else spec.which[0]
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    result = solve(name, op, 3, which=which, tol=tol, seed=0)
    assert result.status.ok, result.message
    assert result.eigenvectors.device.type == "cuda"
    got = torch.sort(result.eigenvalues.detach().cpu().double(), descending=True).values
    # |theta - lambda| <= ||r|| <= tol |theta| for a converged pair, plus rounding of ||A|| = 1
    expected = torch.sort(lam, descending=True).values[:3]
    assert torch.all((got - expected).abs() <= tol * expected + 100 * torch.finfo(dtype).eps)


@pytest.mark.parametrize("extras", [{"block_size": 1}, {"reorthogonalization": "full"},
                                    {"reorthogonalization": "none"}, {"products": "recomputed"}])
def test_lanczos_modes_run_on_cuda(cuda, extras: dict) -> None:  # noqa: ANN001
    A, lam = _matrix()
    result = solve("lanczos", as_operator(A).to("cuda"), 3, which="SA", tol=1e-8, seed=1, **extras)
    assert result.status.ok and result.eigenvalues.device.type == "cuda"
    torch.testing.assert_close(torch.sort(result.eigenvalues.cpu()).values, lam[:3], rtol=1e-7, atol=0)


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_chebyshev_accelerated_lanczos_runs_on_cuda(cuda, which: str) -> None:  # noqa: ANN001
    """``polynomial=d`` on the device: the Gershgorin bound, the recurrence on rows, the records'
    map back to A and the closing Rayleigh-Ritz keep every tensor on it; the values are exact."""
    A, lam = _matrix()
    result = solve("lanczos", as_operator(A).to("cuda"), 3, which=which, tol=1e-8, seed=1, polynomial=8)
    assert result.status.ok, result.message
    assert "Chebyshev acceleration" in result.message
    assert result.eigenvalues.device.type == "cuda" and result.eigenvectors.device.type == "cuda"
    expected = lam[-3:].flip(0) if which == "LA" else lam[:3]
    torch.testing.assert_close(result.eigenvalues.cpu(), expected, rtol=0, atol=4e-8)  # ||r|| <= tol |theta|, ||A|| = 2


@pytest.mark.parametrize("extras", [{"method": "basic"}, {"method": "ortho"}, {"products": "recomputed"},
                                    {"block_size": 8}, {"preconditioner": "jacobi"}, {"backend": "torch"}])
@pytest.mark.parametrize("which", ["LA", "SA"])
def test_lobpcg_configurations_run_on_cuda(cuda, extras: dict, which: str) -> None:  # noqa: ANN001
    """The block engine's paths (basic and ortho steps, recomputed products, a larger block, a
    preconditioner, the torch backend) on the device, against the exact spectrum."""
    A, lam = _matrix()
    result = solve("lobpcg", as_operator(A).to("cuda"), 4, which=which, tol=1e-8, seed=2, **extras)
    assert result.status.ok, result.message
    assert result.eigenvalues.device.type == "cuda" and result.eigenvectors.device.type == "cuda"
    expected = lam[-4:].flip(0) if which == "LA" else lam[:4]
    got = result.eigenvalues.cpu()
    # each converged pair is within ||r|| <= tol |theta| of an eigenvalue (||A|| = 2)
    torch.testing.assert_close(got, expected, rtol=0, atol=4e-8)


def test_the_matrix_bench_runs_on_cuda(cuda) -> None:  # noqa: ANN001
    from explorer.bench import matrix as bench

    problems = bench.make_problems(["dense_cluster_n150"], cases=[(3, "LA")])
    lines: list[str] = []
    table = bench.run_benchmark(problems, ("lanczos", "arpack"), cap_s=30.0, overhead_max_s=0.0,
                                repeat_below_s=0.0, device="cuda", dtype=torch.float32, log=lines.append)
    rows = table.set_index("solver")
    assert rows.loc["lanczos", "status"] == "done" and rows.loc["lanczos", "ok"]
    assert rows.loc["lanczos", "eig_err"] <= 1e-5 + 100 * torch.finfo(torch.float32).eps
    assert rows.loc["lanczos", "peak_gb"] > 0  # from torch.cuda.max_memory_allocated (faked: 1 MiB)
    assert "on the CPU (scipy)" in rows.loc["arpack", "note"] and np.isnan(rows.loc["arpack", "peak_gb"])
    assert np.isfinite(table["overhead"]).all()
    assert any("on cuda:0 float32: t_mv" in line for line in lines)
