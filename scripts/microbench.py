"""Figures the docstrings refer to: the costs behind a few design choices, on this machine.

    .venv/bin/python scripts/microbench.py

* sparse matvec: scipy's CSR kernel against torch's CSR matmul, one thread, the 2-D Laplacian
  (why ``SparseOperator`` runs scipy's kernel on the CPU);
* Hessian-vector product of the sample MLP by double backward through a cached graph, by
  forward-over-reverse, and one forward+backward (why ``"double_backward"`` is the default).

Each figure is the median of interleaved repetitions; the host may be shared, so read ratios.
"""

from __future__ import annotations

import statistics
import time

import torch


def _median_time(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sparse_matvec() -> None:
    from explorer.problems import laplacian_2d

    print("sparse matvec, 2-D Laplacian, 1 thread (median seconds per product)")
    print(f"{'n':>9} {'scipy CSR':>11} {'torch CSR':>11} {'torch/scipy':>12}")
    for grid in (100, 316, 1000):
        problem = laplacian_2d(grid)
        A = problem.operator.matrix if hasattr(problem.operator, "matrix") else problem.operator.to_dense()
        csr = A.to_sparse_csr() if A.layout != torch.sparse_csr else A
        import scipy.sparse as sp

        S = sp.csr_matrix((csr.values().numpy(), csr.col_indices().numpy(), csr.crow_indices().numpy()),
                          shape=tuple(csr.shape))
        x = torch.randn(csr.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        xn = x.numpy()
        repeats = 200 if grid < 1000 else 30
        t_scipy = _median_time(lambda: S @ xn, repeats)
        t_torch = _median_time(lambda: torch.mv(csr, x), repeats)
        print(f"{csr.shape[0]:>9,} {t_scipy:>11.2e} {t_torch:>11.2e} {t_torch / t_scipy:>12.2f}")


def hessian_vector_product() -> None:
    from explorer.models import HessianOperator, load_dataset, load_exported_model
    from explorer.models.samples import MODEL_SAMPLE_DIR

    model = load_exported_model(MODEL_SAMPLE_DIR / "mlp.pt2")
    data = load_dataset(MODEL_SAMPLE_DIR / "mlp_data.safetensors")
    cached = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    uncached = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64, hvp="forward_over_reverse")
    v = torch.randn(cached.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t_cached = _median_time(lambda: cached.matvec(v), 100)
    t_uncached = _median_time(lambda: uncached.matvec(v), 30)
    t_gradient = _median_time(lambda: cached._gradient(), 30)
    print(f"\nHVP of the sample MLP ({cached.shape[0]} parameters, {len(data)} samples), median seconds")
    print(f"  double backward (cached graph): {t_cached:.2e}")
    print(f"  forward over reverse:           {t_uncached:.2e}  ({t_uncached / t_cached:.1f}x)")
    print(f"  one forward + backward:         {t_gradient:.2e}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    sparse_matvec()
    hessian_vector_product()
