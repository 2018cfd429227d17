"""The model Hessian operator against independent references.

* closed forms: a linear least-squares model (the loss is exactly quadratic) and
  multinomial logistic regression (H = (1/N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i);
* central finite differences of plain first-order autograd gradients (bound below);
* the dense Hessian (``dense_hessian``: ``torch.autograd.functional.hessian`` vectorized over
  the flat loss, a different path from the operator's cached double backward);
* a Gauss-Newton matrix assembled from ``torch.func.jacrev`` Jacobians.

Tolerances: a dense float64 reference entry is a sum of N products, so its rounding
error is below N * eps * max|term| (Higham, Accuracy and Stability, Thm 3.1); the
tests allow 64 * N * eps relative to the largest entry.
"""

from __future__ import annotations

import copy
import json
import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from explorer.models import (
    Dataset,
    GGNOperator,
    HessianOperator,
    ModelInputError,
    dense_hessian,
    load_dataset,
    load_exported_model,
)
from explorer.models.samples import MODEL_SAMPLE_DIR, MODEL_SAMPLES, read_manifest
from explorer.solvers import SOLVERS, solve


EPS64 = torch.finfo(torch.float64).eps




def _entry_tol(N: int, reference: torch.Tensor) -> float:
    return 64 * N * EPS64 * float(reference.abs().max())


# -- closed forms ----------------------------------------------------------------------
def _linear_data(N: int = 40, d: int = 5, c: int = 3, seed: int = 0) -> tuple[nn.Linear, Dataset]:
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, c).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(c, d, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    return model, Dataset(X, torch.randn(N, c, generator=g, dtype=torch.float64), "linear")


def _linear_jacobian(X: torch.Tensor, c: int) -> torch.Tensor:
    """J_i (N, c, n) of the logits of nn.Linear w.r.t. [weight (row-major), bias]."""
    N, d = X.shape
    J = torch.zeros(N, c, c * d + c, dtype=X.dtype)
    for a in range(c):
        J[:, a, a * d:(a + 1) * d] = X
        J[:, a, c * d + a] = 1.0
    return J


@pytest.mark.parametrize("hvp,batch_size", [("double_backward", None), ("double_backward", 7),
                                            ("forward_over_reverse", 16)])
def test_least_squares_hessian_matches_closed_form(hvp: str, batch_size: int | None) -> None:
    # L = 1/(N c) sum_i ||W x_i + b - y_i||^2 is quadratic: H = 2/(N c) sum_i J_i^T J_i exactly,
    # whatever the parameters; chunked sums (batch_size=7: 6 chunks, the last of 5) must be exact.
    model, data = _linear_data()
    N, c = len(data), 3
    J = _linear_jacobian(data.inputs, c)
    H_ref = 2.0 / (N * c) * torch.einsum("iap,iaq->pq", J, J)
    op = HessianOperator(model, data, loss="mse", dtype=torch.float64, hvp=hvp, batch_size=batch_size)
    H = op.to_dense()
    assert H.shape == (op.n, op.n) == (c * 5 + c, c * 5 + c)
    torch.testing.assert_close(H, H_ref, rtol=0, atol=_entry_tol(N, H_ref))


def test_logistic_regression_hessian_and_ggn_match_closed_form() -> None:
    # Multinomial logistic regression: H = (1/N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i. The logits
    # are linear in the parameters, so the Gauss-Newton matrix equals the Hessian exactly.
    g = torch.Generator().manual_seed(1)
    N, d, c = 50, 4, 3
    model = nn.Linear(d, c).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(c, d, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (N,), generator=g)
    data = Dataset(X, y, "logreg")
    p = torch.softmax(model(X).detach(), dim=1)
    S = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    J = _linear_jacobian(X, c)
    H_ref = torch.einsum("iap,iab,ibq->pq", J, S, J) / N
    tol = _entry_tol(N, H_ref)
    H = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64, batch_size=13).to_dense()
    torch.testing.assert_close(H, H_ref, rtol=0, atol=tol)
    G = GGNOperator(model, data, loss="cross_entropy", dtype=torch.float64, batch_size=13).to_dense()
    torch.testing.assert_close(G, H_ref, rtol=0, atol=tol)
    # the parameter filter picks the bias block of the same matrix
    Hb = HessianOperator(model, data, loss="ce", params="bias", dtype=torch.float64).to_dense()
    torch.testing.assert_close(Hb, H_ref[c * d:, c * d:], rtol=0, atol=tol)


# -- the sample MLP ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp() -> tuple:
    model = load_exported_model(MODEL_SAMPLE_DIR / "mlp.pt2")
    data = load_dataset(MODEL_SAMPLE_DIR / "mlp_data.safetensors")
    return model, data


@pytest.fixture(scope="module")
def mlp_dense(mlp: tuple) -> torch.Tensor:
    """The dense float64 Hessian of the sample MLP from torch.func.hessian (1732 x 1732, ~3 s)."""
    model, data = mlp
    return dense_hessian(model, data, "cross_entropy", dtype=torch.float64)


@pytest.fixture(scope="module")
def mlp_eig(mlp_dense: torch.Tensor) -> torch.Tensor:
    """All eigenvalues of the dense Hessian, ascending (LAPACK syevd)."""
    return torch.linalg.eigvalsh(mlp_dense)


def _flat_grad(module: nn.Module, op: HessianOperator, theta: torch.Tensor, X: torch.Tensor,
               y: torch.Tensor) -> torch.Tensor:
    params = {k: t.clone().requires_grad_(True) for k, t in op.unflatten(theta).items()}
    loss = nn.functional.cross_entropy(functional_call(module, params, (X,)), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))])


def test_hvp_matches_central_finite_differences(mlp: tuple) -> None:
    model, data = mlp
    op = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    module = copy.deepcopy(model.module).double()
    X, y = data.inputs.double(), data.targets
    theta = op.parameters_vector()
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v /= v.norm()
    hv = op.matvec(v)

    def fd_error(eps: float) -> float:
        fd = (_flat_grad(module, op, theta + eps * v, X, y) - _flat_grad(module, op, theta - eps * v, X, y)) / (2 * eps)
        return float((fd - hv).norm() / hv.norm())

    # Central differences of g = dL/dtheta along a unit v:
    #   (g(t + e v) - g(t - e v)) / (2 e) - H v = (e^2 / 6) D^4L[v, v, v, .] + O(e^4)   (truncation)
    #                                             + O(u ||g|| / e)                      (rounding, u = 2^-53)
    # Measured on this model: truncation ~ 0.05 e^2 relative to ||H v||, rounding ~ 1e-15 / e.
    # At e = 1e-3 both terms are below 1e-7, so 1e-6 leaves a 20x margin; at e = 1e-2 and 5e-3
    # truncation dominates and must shrink by (1e-2 / 5e-3)^2 = 4 (the e^2 law, within 10 %).
    assert fd_error(1e-3) < 1e-6
    ratio = fd_error(1e-2) / fd_error(5e-3)
    assert 3.6 < ratio < 4.4, ratio


def test_operator_matches_dense_torch_func_hessian(mlp: tuple, mlp_dense: torch.Tensor) -> None:
    model, data = mlp
    op = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    V = torch.randn(op.n, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(op.matmat(V), mlp_dense @ V, rtol=0,
                               atol=64 * len(data) * EPS64 * float(mlp_dense.abs().max()) * op.n ** 0.5 * 4)
    assert op.n_matvec == 4
    # per-layer block of the same matrix through the parameter filter
    block = HessianOperator(model, data, loss="cross_entropy", params="layers.2.*", dtype=torch.float64)
    start, stop = block_range(op, "layers.2.")
    Bv = torch.randn(block.n, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(block.matmat(Bv), mlp_dense[start:stop, start:stop] @ Bv, rtol=0,
                               atol=1e-12 * float(mlp_dense.abs().max()) * block.n ** 0.5)


def block_range(op: HessianOperator, prefix: str) -> tuple[int, int]:
    blocks = [b for b in op.blocks if b.name.startswith(prefix)]
    return blocks[0].start, blocks[-1].stop


def _solver_for_test() -> str:
    return "lanczos" if "lanczos" in SOLVERS else "lobpcg"


def test_top_and_most_negative_eigenvalues_match_dense(mlp: tuple, mlp_dense: torch.Tensor,
                                                       mlp_eig: torch.Tensor) -> None:
    model, data = mlp
    exact = mlp_eig
    norm = float(exact.abs().max())
    op = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    solver = _solver_for_test()
    tol = 1e-9
    top = solve(solver, op, 5, which="LA", tol=tol, seed=0)
    assert top.status.ok, top.status_message
    # A converged Ritz pair has ||H x - theta x|| <= tol |theta|, so some eigenvalue lies within
    # that residual of theta (Weyl / Bauer-Fike for symmetric H); the dense reference adds
    # its own backward error, ~ n eps ||H||.
    bound = top.residual_norms + 1e3 * mlp_dense.shape[0] * EPS64 * norm
    assert torch.all((top.eigenvalues - exact.flip(0)[:5]).abs() <= bound), (top.eigenvalues, exact.flip(0)[:5])
    # the most negative eigenvalues sit next to a dense bulk near 0: a larger basis, single vectors
    extra = {"block_size": 1, "max_basis": 60} if solver == "lanczos" else {}
    bottom = solve(solver, op, 2, which="SA", tol=1e-6, seed=0, max_iter=4000, **extra)
    assert bottom.status.ok, bottom.status_message
    assert bottom.eigenvalues[0] < 0  # a partly trained net: the Hessian is indefinite
    bound = bottom.residual_norms + 1e3 * mlp_dense.shape[0] * EPS64 * norm
    assert torch.all((bottom.eigenvalues - exact[:2]).abs() <= bound), (bottom.eigenvalues, exact[:2])
    # per-layer norms of the top eigenvectors: each column's squares sum to 1
    table = op.layer_norms(top.eigenvectors)
    assert list(table["layer"]) == ["layers.0", "layers.2", "layers.4"]
    shares = torch.tensor(table[[f"v{i}" for i in range(1, 6)]].to_numpy())
    torch.testing.assert_close(shares.pow(2).sum(0), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)


def test_manifest_matches_dense_hessian(mlp_dense: torch.Tensor, mlp_eig: torch.Tensor) -> None:
    entry = {e["name"]: e for e in read_manifest()["models"]}["mlp"]
    exact = mlp_eig
    ref = torch.tensor(entry["hessian_top5"], dtype=torch.float64)
    torch.testing.assert_close(exact.flip(0)[:5], ref, rtol=1e-9, atol=0)
    assert abs(float(torch.trace(mlp_dense)) - entry["hessian_trace"]) <= 1e-9 * abs(entry["hessian_trace"])
    assert set(MODEL_SAMPLES) == {e["name"] for e in read_manifest()["models"]}


def test_hutchinson_trace_of_the_mlp_hessian(mlp: tuple, mlp_dense: torch.Tensor) -> None:
    from explorer.models.analysis import hutchinson_trace

    model, data = mlp
    op = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    est = hutchinson_trace(op, n_probes=60, seed=0)
    exact = float(torch.trace(mlp_dense))
    assert est.n_probes == 60 and est.n_matvec == 60
    # Rademacher probes: Var(z^T H z) = 2 sum_{i != j} H_ij^2; 4 standard errors (p ~ 6e-5).
    off = mlp_dense - torch.diag(torch.diagonal(mlp_dense))
    sigma = float((2 * off.pow(2).sum()).sqrt()) / 60 ** 0.5
    assert abs(est.trace - exact) <= 4 * sigma
    assert 0.5 < est.std_error / sigma < 2.0


def test_minibatch_operator_is_the_hessian_of_its_subset(mlp: tuple) -> None:
    model, data = mlp
    op = HessianOperator(model, data, loss="cross_entropy", minibatch=64, seed=5, dtype=torch.float64)
    assert op.n_samples == 64 and "mini-batch of 64 of 256" in op.description and "seed 5" in op.description
    again = HessianOperator(model, data, loss="cross_entropy", minibatch=64, seed=5, dtype=torch.float64)
    other = HessianOperator(model, data, loss="cross_entropy", minibatch=64, seed=6, dtype=torch.float64)
    assert torch.equal(op.indices, again.indices) and not torch.equal(op.indices, other.indices)
    subset = HessianOperator(model, data.subset(op.indices), loss="cross_entropy", dtype=torch.float64)
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), subset.matvec(v), rtol=1e-12, atol=1e-15)


def test_ggn_matches_jacobian_assembly(mlp: tuple) -> None:
    model, data = mlp
    op = GGNOperator(model, data, loss="cross_entropy", params="layers.4.*", dtype=torch.float64)
    module = copy.deepcopy(model.module).double()
    X = data.inputs.double()
    theta0 = op.parameters_vector()
    others = {k: v.detach().double() for k, v in module.named_parameters() if not k.startswith("layers.4.")}

    def logits(theta: torch.Tensor) -> torch.Tensor:
        return functional_call(module, {**others, **op.unflatten(theta)}, (X,))

    J = torch.func.jacrev(logits)(theta0)  # (N, C, n)
    p = torch.softmax(logits(theta0).detach(), dim=1)
    S = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    G_ref = torch.einsum("iap,iab,ibq->pq", J, S, J) / len(data)
    G = op.to_dense()
    torch.testing.assert_close(G, G_ref, rtol=0, atol=_entry_tol(len(data), G_ref))
    assert float(torch.linalg.eigvalsh(G)[0]) >= -1e3 * op.n * EPS64 * float(G.abs().max())  # PSD


def test_float32_default_and_thread_safety(mlp: tuple) -> None:
    model, data = mlp
    op32 = HessianOperator(model, data, loss="cross_entropy")
    op64 = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    assert op32.dtype == torch.float32 and "float32" in op32.description
    v = torch.randn(op64.n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ref = op64.matvec(v)
    # float32: each output entry goes through a forward and two backward passes whose inner
    # products have length <= 256 samples x 32 units; 100 sqrt(8192) eps32 ~ 1e-3 is generous
    # (measured: 3e-7).
    err = float((op32.matvec(v.float()).double() - ref).norm() / ref.norm())
    assert err < 100 * 8192 ** 0.5 * torch.finfo(torch.float32).eps
    # two threads on one operator (the app shares cached operators) get the same answers
    results: list[torch.Tensor] = []

    def work() -> None:
        for _ in range(5):
            results.append(op64.matvec(v))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 10 and all(torch.equal(r, results[0]) for r in results)
    torch.testing.assert_close(results[0], ref, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [HessianOperator, GGNOperator])
def test_uncached_chunked_products_equal_cached(mlp: tuple, cls: type) -> None:
    # cache=False rebuilds one chunk's graph per product (memory bounded by a chunk): same matrix,
    # summed in a different order, so equal up to a few roundings of each entry.
    model, data = mlp
    cached = cls(model, data, loss="cross_entropy", dtype=torch.float64)
    chunked = cls(model, data, loss="cross_entropy", dtype=torch.float64, batch_size=50, cache=False)
    assert len(chunked._chunks) == 6
    v = torch.randn(cached.n, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    ref = cached.matvec(v)
    torch.testing.assert_close(chunked.matvec(v), ref, rtol=0, atol=1e3 * EPS64 * float(ref.abs().max()))


def test_loss_value_and_gradient_agree_with_plain_autograd(mlp: tuple) -> None:
    model, data = mlp
    op = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64, batch_size=100)
    module = copy.deepcopy(model.module).double()
    theta = op.parameters_vector()
    g = _flat_grad(module, op, theta, data.inputs.double(), data.targets)
    torch.testing.assert_close(op.gradient(), g, rtol=1e-12, atol=1e-15)
    manifest_loss = {e["name"]: e for e in read_manifest()["models"]}["mlp"]["train_loss"]
    assert abs(op.loss_value() - manifest_loss) < 1e-5  # manifest: float32 training-time value


# -- bad input ---------------------------------------------------------------------------
def test_messages_for_inputs_that_do_not_fit(mlp: tuple) -> None:
    model, data = mlp
    with pytest.raises(ModelInputError, match=r"inputs of shape \(17,\) per sample.*expects \(16,\)"):
        HessianOperator(model, Dataset(torch.randn(10, 17), torch.zeros(10, dtype=torch.long)), "cross_entropy")
    with pytest.raises(ModelInputError, match="class indices 0..9 but the model outputs 4 classes"):
        HessianOperator(model, Dataset(data.inputs[:10], torch.arange(10)), "cross_entropy")
    with pytest.raises(ModelInputError, match="real-valued targets.*choose the loss 'mse'"):
        HessianOperator(model, Dataset(data.inputs[:10], torch.randn(10)), "cross_entropy")
    with pytest.raises(ModelInputError, match="one target per output.*choose the loss 'cross_entropy'"):
        HessianOperator(model, data, "mse")
    with pytest.raises(ModelInputError, match="selects no trainable parameter.*layers.0.weight"):
        HessianOperator(model, data, "cross_entropy", params="conv*")
    with pytest.raises(ModelInputError, match="`loss` must be 'cross_entropy' or 'mse'"):
        HessianOperator(model, data, "hinge")
    with pytest.raises(ModelInputError, match="`minibatch` must be between 1 and the 256 samples"):
        HessianOperator(model, data, "cross_entropy", minibatch=1000)
    frozen = nn.Linear(3, 2)
    frozen.requires_grad_(False)
    with pytest.raises(ModelInputError, match="no trainable parameters"):
        HessianOperator(frozen, Dataset(torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), "cross_entropy")


def test_fixed_batch_export_is_explained(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = nn.Linear(3, 2)
    program = torch.export.export(model, (torch.randn(4, 3),))  # static batch of 4
    path = tmp_path / "static.pt2"
    torch.export.save(program, str(path))
    loaded = load_exported_model(path)
    assert loaded.input_spec.fixed_batch == 4
    op = HessianOperator(loaded, Dataset(torch.randn(8, 3), torch.zeros(8, dtype=torch.long)), "cross_entropy")
    assert op.batch_size == 4 and len(op._chunks) == 2
    with pytest.raises(ModelInputError, match="fixed batch size of 4.*dynamic batch dimension"):
        HessianOperator(loaded, Dataset(torch.randn(6, 3), torch.zeros(6, dtype=torch.long)), "cross_entropy")


def test_manifest_is_json_with_every_sample() -> None:
    data = json.loads((MODEL_SAMPLE_DIR / "manifest.json").read_text())
    total = sum((MODEL_SAMPLE_DIR / e[key]).stat().st_size for e in data["models"]
                for key in ("model_file", "state_dict_file", "data_file"))
    assert total < 2_000_000


@pytest.mark.gpu
def test_cuda_operator_matches_cpu(mlp: tuple) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model, data = mlp
    cpu = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    gpu = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64, device="cuda")
    v = torch.randn(cpu.n, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    hv = gpu.matvec(v.cuda())
    assert hv.device.type == "cuda"
    torch.testing.assert_close(hv.cpu(), cpu.matvec(v), rtol=1e-10, atol=1e-13)


# -- sequence models: logits (N, T, classes), targets (N, T); a LayerNorm in the model ------------
class _SequenceModel(nn.Module):
    """tokens (N, T) -> logits (N, T, vocab): embedding, a causal running mean, LayerNorm, head."""

    def __init__(self, vocab: int = 7, width: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        steps = torch.arange(1, tokens.shape[1] + 1, dtype=x.dtype, device=x.device).view(1, -1, 1)
        return self.head(self.norm(torch.tanh(x.cumsum(dim=1) / steps)))


def _sequence_data(seed: int = 0, N: int = 6, T: int = 5, vocab: int = 7) -> tuple[nn.Module, tuple]:
    torch.manual_seed(seed)  # nn.Module's own initialisation; the data come from a local generator
    model = _SequenceModel(vocab).double()
    with torch.no_grad():  # a LayerNorm weight away from 1, so its mixed derivatives matter
        model.norm.weight.copy_(1.0 + 0.5 * torch.randn(model.norm.weight.shape, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, vocab, (N, T + 1), generator=g)
    return model, (stream[:, :-1], stream[:, 1:])


def test_sequence_cross_entropy_is_the_mean_over_all_positions() -> None:
    model, (tokens, targets) = _sequence_data()
    op = HessianOperator(model, (tokens, targets), loss="cross_entropy", dtype=torch.float64)
    with torch.no_grad():
        logits = model(tokens)
    flat = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    assert abs(op.loss_value() - float(flat)) <= 8 * EPS64 * float(flat)
    # chunks of 2 and 4 sequences (weights n_b / N) give the same Hessian as all 6 at once
    chunked = HessianOperator(model, (tokens, targets), loss="cross_entropy", dtype=torch.float64, batch_size=4)
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(chunked.matvec(v), op.matvec(v), rtol=0, atol=_entry_tol(6, op.matvec(v)))


def test_sequence_hvp_and_dense_hessian_match_finite_differences() -> None:
    """The dense reference (autograd, vectorized) and the operator agree with each other and with
    central differences of first-order gradients on a model with a LayerNorm, where
    ``torch.func.hessian`` is off by ~1e-2 in torch 2.13 (explorer.models.dense_hessian)."""
    model, (tokens, targets) = _sequence_data()
    op = HessianOperator(model, (tokens, targets), loss="cross_entropy", dtype=torch.float64)
    dense = dense_hessian(model, (tokens, targets), "cross_entropy")
    H = op.to_dense()
    torch.testing.assert_close(H, dense, rtol=0, atol=_entry_tol(tokens.numel(), dense))
    theta = op.parameters_vector()

    def grad(t: torch.Tensor) -> torch.Tensor:
        params = {k: p.clone().requires_grad_(True) for k, p in op.unflatten(t).items()}
        logits = functional_call(model, params, (tokens,))
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))])

    v = torch.randn(op.n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v /= v.norm()
    hv = H @ v
    # central differences: truncation O(e^2), rounding O(u / e); at e = 1e-4 both are far below
    # 1e-6 relative; the e^2 law (ratio 4 between e = 1e-2 and 5e-3) shows it is truncation
    errors = {}
    for e in (1e-2, 5e-3, 1e-4):
        fd = (grad(theta + e * v) - grad(theta - e * v)) / (2 * e)
        errors[e] = float((fd - hv).norm() / hv.norm())
    assert errors[1e-4] < 1e-6
    assert 3.6 < errors[1e-2] / errors[5e-3] < 4.4, errors


def test_sequence_ggn_equals_the_hessian_where_the_logits_are_affine() -> None:
    """With only the head selected the logits are affine in the parameters, so H = G exactly."""
    model, data = _sequence_data()
    H = HessianOperator(model, data, loss="cross_entropy", params="head.*", dtype=torch.float64).to_dense()
    G = GGNOperator(model, data, loss="cross_entropy", params="head.*", dtype=torch.float64).to_dense()
    torch.testing.assert_close(G, H, rtol=0, atol=_entry_tol(data[0].numel(), H))


def test_sequence_targets_that_do_not_fit_are_explained() -> None:
    model, (tokens, targets) = _sequence_data()
    with pytest.raises(ModelInputError, match="5 positions per sequence but .* targets for 4"):
        HessianOperator(model, (tokens, targets[:, :4]), loss="cross_entropy")
    with pytest.raises(ModelInputError, match=r"class indices \d\.\.9 but the model outputs 7 classes \(0\.\.6\)"):
        HessianOperator(model, (tokens, torch.where(targets == 0, 9, targets)), loss="cross_entropy")


def test_shift_invert_on_the_hessian_goes_through_minres_and_finds_the_nearest(mlp: tuple, mlp_eig: torch.Tensor) -> None:
    """A Hessian has no matrix to factor: sigma runs an inner MINRES per application (float64), and the k
    eigenvalues nearest sigma match the dense Hessian's; an interval (inertia slicing) is refused with
    the reason and the alternative."""
    model, data = mlp
    op = HessianOperator(model, data, "cross_entropy", dtype=torch.float64)
    sigma, k, tol = 0.5, 3, 1e-8
    result = solve("lanczos", op, k, which="LM", sigma=sigma, tol=tol, seed=0)
    assert result.status.value == "converged", result.message
    assert "MINRES" in result.message
    exact = mlp_eig.numpy()
    nearest = exact[np.argsort(np.abs(exact - sigma), kind="stable")[:k]]
    # |theta - lambda| <= ||r|| <= tol * max(|theta|, ...) for a converged pair; the dense eigh is exact to ~n eps ||H||
    np.testing.assert_allclose(np.sort(result.eigenvalues.numpy()), np.sort(nearest),
                               atol=tol * float(np.abs(exact).max()) + 1e-12)
    with pytest.raises(ValueError, match="matrix-free operator has none.*use shift-invert"):
        solve("lanczos", op, 10, lower=0.4, upper=0.6)
