"""explorer.distributed: sharding, operators and failures, in one process and across 2 and 4 gloo ranks.

The multi-process tests start their ranks themselves on localhost (``launch.launch_local``,
the variables torchrun sets; and ``torchrun`` itself for the command line), each bounded in
time. They check:

* equality with the single-process run: bit for bit where both take the same path (a row
  block's products are the full matrix's rows, computed the same way), to tolerance where
  the distributed operator lets the solver store products, and against exact eigenvalues
  (analytic, dense eigh, the sample model's dense Hessian);
* a rank killed (SIGKILL) or hung mid-run: the others end with a message that names it,
  within seconds of the failure (kill) or the timeout (hang), instead of waiting;
* mismatched problems or settings, and ranks whose vectors drift apart: a clear error on
  every rank;
* a Stop from rank 0's tracker stops every rank at the same iteration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch

from explorer.distributed import (
    DistContext,
    DistributedSetupError,
    ProblemMismatchError,
    RanksDivergedError,
    RowShardedOperator,
    init_from_env,
    parse_source,
    read_row_block,
    row_ranges,
    shard_indices,
    solve_distributed,
)
from explorer.distributed import context as context_module
from explorer.distributed.launch import launch_local
from explorer.distributed.operators import DataParallelOperator, RootTracker
from explorer.distributed.sharding import slice_rows
from explorer.operators import DenseOperator, SparseOperator
from explorer.problems import laplacian_2d, random_graph_laplacian
from explorer.solvers import solve
from explorer.tracking import NullTracker, StopSolve

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")
MODELS = ROOT / "sample_data" / "models"
EPS = torch.finfo(torch.float64).eps


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "EXPLORER_TEST_TIMEOUT": "30"}


def _reports(out: Path, world: int) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


# ---------------------------------------------------------------------------------------
# One process
# ---------------------------------------------------------------------------------------
def test_row_ranges_cover_the_rows_with_sizes_within_one() -> None:
    for n, p in ((10, 3), (7, 7), (100, 4), (5, 1)):
        ranges = row_ranges(n, p)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        sizes = [b - a for a, b in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_shards_partition_the_samples_without_padding() -> None:
    shards = [shard_indices(10, r, 4) for r in range(4)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    assert [len(s) for s in shards] == [3, 3, 2, 2]


def test_parse_source() -> None:
    spec = parse_source("laplacian_2d:300")
    assert spec.kind == "generate" and dict(spec.params) == {"nx": 300}
    assert dict(parse_source("laplacian_2d:nx=20,ny=10").params) == {"nx": 20, "ny": 10}
    assert parse_source("sample:laplacian2d_30x30").kind == "sample"
    with pytest.raises(ValueError, match="no parameter 'nz'"):
        parse_source("laplacian_2d:nz=3")
    with pytest.raises(ValueError, match="neither a generator"):
        parse_source("no_such_thing:3")
    with pytest.raises(ValueError, match="must be <= 1000"):
        parse_source("laplacian_2d:5000")


@pytest.fixture(scope="module")
def matrix_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random graph Laplacian (n = 300) as uncompressed and compressed .npz and symmetric .mtx,
    plus random vectors for the Hessian products."""
    out = tmp_path_factory.mktemp("matrices")
    A = random_graph_laplacian(300, p=0.03, seed=1).operator.to_scipy()
    sp.save_npz(out / "graph.npz", A, compressed=False)
    sp.save_npz(out / "graph_compressed.npz", A, compressed=True)
    scipy.io.mmwrite(out / "graph.mtx", A, symmetry="symmetric")
    generator = torch.Generator().manual_seed(5)
    torch.save(torch.randn(1732, 3, generator=generator, dtype=torch.float64), out / "hessian_vectors.pt")
    return out


@pytest.mark.parametrize("name", ["graph.npz", "graph_compressed.npz", "graph.mtx"])
def test_read_row_block_matches_slicing(matrix_dir: Path, name: str) -> None:
    full = sp.load_npz(matrix_dir / "graph.npz").tocsr()
    for start, stop in row_ranges(300, 4) + [(0, 300), (17, 17)]:
        block = read_row_block(matrix_dir / name, start, stop)
        assert block.n == 300 and block.how.endswith("stream")
        expected = full[start:stop]
        assert (abs(block.matrix - expected)).max() == 0 if block.matrix.nnz or expected.nnz else True
        assert block.matrix.shape == (stop - start, 300)
        assert block.nbytes < (full.data.nbytes + full.indices.nbytes + full.indptr.nbytes) or stop - start == 300


def test_read_row_block_refuses_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mtx"
    bad.write_text("%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n4 1 2.0\n")
    with pytest.raises(ValueError, match="indices"):
        read_row_block(bad, 0, 3)
    short = tmp_path / "short.mtx"
    short.write_text("%%MatrixMarket matrix coordinate real general\n3 3 3\n1 1 1.0\n")
    with pytest.raises(ValueError, match="says 3 entries but holds 1"):
        read_row_block(short, 0, 3)
    with pytest.raises(ValueError, match="no file"):
        read_row_block(tmp_path / "missing.npz", 0, 1)


def test_row_sharded_products_are_the_matrix_rows_bit_for_bit() -> None:
    A = laplacian_2d(25).operator.to_scipy()
    op = RowShardedOperator(slice_rows(A, 0, A.shape[0]), row_ranges(A.shape[0], 1), DistContext.local())
    X = torch.randn(A.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(op.matmat(X), torch.from_numpy(A @ X.numpy()))
    assert torch.equal(op.matvec(X[:, 0]), torch.from_numpy(A @ X[:, 0].numpy()))
    assert torch.equal(op.diagonal(), torch.from_numpy(A.diagonal()))
    assert op.n_matvec == 4 and op.nnz is None and op.nnz_total == A.nnz


def test_one_rank_lanczos_equals_the_single_process_run() -> None:
    problem = laplacian_2d(30)
    A = problem.operator.to_scipy()
    op = RowShardedOperator(slice_rows(A, 0, A.shape[0]), row_ranges(A.shape[0], 1), DistContext.local())
    single = solve("lanczos", problem.operator, 6, which="LA", tol=1e-8, seed=0, products="recomputed")
    ours = solve("lanczos", op, 6, which="LA", tol=1e-8, seed=0, products="recomputed")
    assert torch.equal(single.eigenvalues, ours.eigenvalues) and single.n_matvec == ours.n_matvec


def test_one_rank_sharded_lanczos_equals_the_single_process_run() -> None:
    """One rank of sharded vectors is one process: every reduction is a sum of one term (norms:
    sqrt(fl(s^2)) = s), so eigenvalues, eigenvectors, residuals and matvecs are the same bits."""
    problem = laplacian_2d(30)
    A = problem.operator.to_scipy()
    op = RowShardedOperator(slice_rows(A, 0, A.shape[0]), row_ranges(A.shape[0], 1), DistContext.local(),
                            vectors="sharded")
    assert op.space is not None and op.space.sharded
    for extras in ({"products": "recomputed"}, {"products": "stored", "reorthogonalization": "full"}):
        single = solve("lanczos", problem.operator, 6, which="LA", tol=1e-8, seed=0, **extras)
        ours = solve("lanczos", op, 6, which="LA", tol=1e-8, seed=0, **extras)
        assert torch.equal(single.eigenvalues, ours.eigenvalues) and single.n_matvec == ours.n_matvec
        assert torch.equal(single.eigenvectors, ours.eigenvectors)
        assert torch.equal(single.residual_norms, ours.residual_norms)
    assert op.space.reductions > 0
    single = solve("lanczos", problem.operator, 6, which="LA", tol=1e-8, seed=0, products="recomputed")
    outcome = solve_distributed("laplacian_2d:30", "lanczos", 6, which="LA", tol=1e-8, context=DistContext.local())
    assert outcome.stats["vectors"] == "sharded"  # "auto": Lanczos on a row-sharded matrix
    assert torch.equal(outcome.result.eigenvalues, single.eigenvalues)
    assert torch.equal(outcome.result.eigenvectors, single.eigenvectors)
    with pytest.raises(ValueError, match="--vectors replicated"):
        solve_distributed("laplacian_2d:20", "lobpcg", 4, context=DistContext.local(), vectors="sharded")


def test_sharded_space_reduces_like_one_process() -> None:
    """The sharded space's pieces (Gram blocks, norms, TSQR, random rows) on a one-rank group."""
    from explorer.distributed.space import ShardedSpace

    space = ShardedSpace(DistContext.local(), row_ranges(50, 1))
    g = torch.Generator().manual_seed(3)
    X = torch.randn(4, 50, dtype=torch.float64, generator=g)
    assert torch.equal(space.norms(X), torch.linalg.vector_norm(X, dim=1))
    assert torch.equal(space.dots(X, X), X @ X.T)
    Q, R = space.qr(X.T)
    assert torch.allclose(Q @ R, X.T, rtol=0, atol=1e-13)
    a = space.random(50, 2, torch.Generator().manual_seed(1), dtype=torch.float64, device=torch.device("cpu"))
    b = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(a, b)


def test_data_parallel_operator_weights_the_local_product() -> None:
    M = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    op = DataParallelOperator(DenseOperator(M + M.T), 0.25, DistContext.local())
    x = torch.ones(6, dtype=torch.float64)
    assert torch.allclose(op.matvec(x), 0.25 * (M + M.T) @ x, rtol=0, atol=1e-14)


def test_checksums_that_disagree_raise_ranks_diverged() -> None:
    op = RowShardedOperator(sp.identity(4, format="csr"), row_ranges(4, 1), DistContext.local())
    sums = torch.tensor([[1.0], [1.0 + 1e-9]], dtype=torch.float64)
    X = torch.tensor([[0.5], [0.0], [0.0], [0.0]], dtype=torch.float64)
    op.matmat(X)  # sets the weights (w_0 = 1: the weighted 1-norm of X is 0.5)
    with pytest.raises(RanksDivergedError, match="rank 1's input vector differs"):
        op._check(sums, X, torch.zeros(1), "product 3")
    op._check(torch.tensor([[1.0], [1.0 + EPS]], dtype=torch.float64), X, torch.zeros(1),
              "product 3")  # rounding-level differences pass


def test_root_tracker_one_process_stops_at_once() -> None:
    class Stop(NullTracker):
        def on_iteration(self, record) -> None:  # type: ignore[no-untyped-def]
            raise StopSolve("enough")

    result = solve("lanczos", laplacian_2d(20).operator, 3, which="LA", seed=0,
                   tracker=RootTracker(DistContext.local(), Stop()))
    assert result.status.value == "stopped" and result.n_iter == 1


def test_solve_distributed_one_process_knows_the_exact_eigenvalues() -> None:
    outcome = solve_distributed("laplacian_2d:20", "lanczos", 4, which="SA", tol=1e-10, context=DistContext.local())
    assert outcome.reference is not None
    assert np.allclose(outcome.summary()["eigenvalues"], outcome.reference, rtol=0, atol=1e-9 * 8)


def test_init_from_env_without_torchrun_says_how_to_launch() -> None:
    with pytest.raises(DistributedSetupError, match="torchrun --nproc-per-node"):
        init_from_env("gloo", environ={})


def test_nccl_without_gpus_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    if not torch.distributed.is_nccl_available():
        with pytest.raises(DistributedSetupError, match="no NCCL.*--backend gloo"):
            init_from_env("nccl", environ=env)
    monkeypatch.setattr(context_module.dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(context_module.torch.cuda, "is_available", lambda: False)
    with pytest.raises(DistributedSetupError, match="no CUDA GPU is visible.*--backend gloo"):
        init_from_env("nccl", environ=env)
    monkeypatch.setattr(context_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(context_module.torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DistributedSetupError, match="one GPU per rank.*sees 1 GPU"):
        init_from_env("nccl", environ={**env, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"})


# ---------------------------------------------------------------------------------------
# 2 and 4 ranks (gloo, localhost)
# ---------------------------------------------------------------------------------------
def _single(source_matrix: sp.spmatrix | None, problem, solver: str, k: int, which: str, **extras):
    operator = SparseOperator(source_matrix) if source_matrix is not None else problem.operator
    return solve(solver, operator, k, which=which, tol=1e-8, seed=0, **extras)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("world", [2, 4])
def test_suite_across_ranks_equals_one_process(world: int, matrix_dir: Path, tmp_path: Path) -> None:
    full = world == 2  # 4 ranks on this 2-core host: the subset (each product costs a 4-way exchange)
    runs = launch_local([str(WORKER), "suite", str(tmp_path), str(matrix_dir), "full" if full else "lite"], world,
                        timeout=360, env=_env())
    for run in runs:
        assert run.returncode == 0, f"rank {run.rank} rc={run.returncode} timed_out={run.timed_out}\n{run.stderr[-3000:]}"
    reports = _reports(tmp_path, world)
    problem = laplacian_2d(30)
    graph = sp.load_npz(matrix_dir / "graph.npz")
    exact_graph = np.linalg.eigvalsh(graph.toarray())[::-1][:5]

    for report in reports:  # every rank has the same result
        for key in ("generated_recomputed", "npz", "mtx", "hessian_top") + (
                ("generated", "npz_compressed", "lobpcg") if full else ()):
            assert report[key]["eigenvalues"] == reports[0][key]["eigenvalues"], key
        assert (report["stop"]["status"], report["stop"]["n_iter"]) == (reports[0]["stop"]["status"],
                                                                        reports[0]["stop"]["n_iter"])

    r = reports[0]
    # Same path as one process (recomputed products): bit for bit, the same products.
    single = _single(None, problem, "lanczos", 6, "LA", products="recomputed")
    assert r["generated_recomputed"]["eigenvalues"] == single.eigenvalues.tolist()
    assert r["generated_recomputed"]["n_matvec"] == single.n_matvec
    for key in ("npz", "mtx") + (("npz_compressed",) if full else ()):
        single = _single(graph, None, "lanczos", 5, "LA", products="recomputed")
        assert r[key]["eigenvalues"] == single.eigenvalues.tolist(), key
        assert np.allclose(r[key]["eigenvalues"], exact_graph, rtol=1e-10)
    # Stored products (the distributed operator's choice): to tolerance, and against the exact values.
    for key, k, which, solver in (("generated", 6, "SA", "lanczos"), ("lobpcg", 4, "SA", "lobpcg"))[:2 if full else 0]:
        exact = problem.reference(k, which).numpy()
        assert np.allclose(r[key]["eigenvalues"], exact, rtol=0, atol=1e-8 * 8), key
        assert r[key]["reference"] == pytest.approx(exact.tolist(), abs=0)
        single = _single(None, problem, solver, k, which)
        assert np.allclose(r[key]["eigenvalues"], single.eigenvalues.numpy(), rtol=0, atol=1e-8 * 8)
    stats = r["generated_recomputed"]["stats"]
    assert stats["local"]["rows"] == list(row_ranges(900, world)[0])
    calls = stats["collectives"]["calls"]  # one all-gather per product of a block (1 or 2 columns here)
    assert r["generated_recomputed"]["n_iter"] <= calls <= r["generated_recomputed"]["n_matvec"]

    # Data-parallel Hessian and Gauss-Newton products equal the single-process ones over all the data.
    from explorer.models import GGNOperator, HessianOperator, load_dataset, load_exported_model
    from explorer.models.samples import read_manifest

    model, data = load_exported_model(MODELS / "mlp.pt2"), load_dataset(MODELS / "mlp_data.safetensors")
    V = torch.load(matrix_dir / "hessian_vectors.pt")
    for key, cls in (("hessian_products", HessianOperator), ("ggn_products", GGNOperator))[:2 if full else 1]:
        full = cls(model, data, "cross_entropy", dtype=torch.float64).matmat(V)
        got = torch.tensor(r[key], dtype=torch.float64)
        scale = float(full.abs().max())
        assert torch.allclose(got, full, rtol=0, atol=1e3 * EPS * scale), key  # summation order only
    top_dense = [m for m in read_manifest(MODELS)["models"] if m["name"] == "mlp"][0]["hessian_top5"]
    assert np.allclose(r["hessian_top"]["eigenvalues"], top_dense, rtol=1e-7)
    assert sum(report["hessian_top"]["samples"] for report in reports) == 256
    assert sum(report["hessian_top"]["weight"] for report in reports) == pytest.approx(1.0, abs=1e-15)

    # Stop: every rank STOPPED at the same iteration, one after rank 0's tracker asked.
    assert r["stop"]["status"] == "stopped" and r["stop"]["n_iter"] == 4 and r["stop"]["tracker_calls"] == 3
    # Sharded vectors: the same eigenvalues and status on every rank; eigenvectors gathered on rank 0.
    _check_sharded(reports, problem, world, world == 2)  # (`full` was reused above)
    # Mismatches: named on every rank.
    for report in reports:
        assert "source: rank 0 has" in report["mismatch_source"] and "laplacian_2d(nx=31)" in report["mismatch_source"]
        assert "k: rank 0 has 4, rank 1 has 5" in report["mismatch_k"]
        assert re.search(r"rank [1-9]'s input vector differs from rank 0's", report["diverged"]), report["diverged"]
        assert report["after_divergence"] == reports[0]["after_divergence"]


def _check_sharded(reports: list[dict], problem, world: int, full: bool) -> None:  # type: ignore[no-untyped-def]
    """Sharded Lanczos across ranks against the analytic spectrum and one process.

    The ranks sum each inner product from p partial sums, so the run is not one process's bit
    for bit (the summation order differs at rounding level, and the iterations drift apart
    from there); both are converged runs of the same method. For a symmetric A and a unit
    x, some eigenvalue lies within ``||A x - theta x||`` of the Rayleigh quotient theta
    (Weyl / Bauer-Fike), and the solver returns Ritz pairs with true residuals below
    ``tol max(|theta|, sqrt(eps) ||A||)``; so each value is within its residual (plus the
    rounding of forming it, ~n eps ||A|| with ||A|| <= 8) of the exact one, and within twice
    ``tol ||A||`` of one process's.
    """
    keys = ("sharded", "sharded_stored", "sharded_full") if full else ("sharded",)
    for report in reports:
        for key in keys:
            assert report[key]["eigenvalues"] == reports[0][key]["eigenvalues"], key
            assert report[key]["residual_norms"] == reports[0][key]["residual_norms"], key
            assert report[key]["status"] == "converged", key
        assert report["sharded_stop"] == {**reports[0]["sharded_stop"], "tracker_calls": report["sharded_stop"][
            "tracker_calls"]}
        assert "--vectors replicated" in report["sharded_lobpcg"], report["sharded_lobpcg"]
    r = reports[0]
    n, norm_a, tol = 900, 8.0, 1e-8
    rounding = n * EPS * norm_a
    for key, which in (("sharded", "LA"), ("sharded_stored", "SA"), ("sharded_full", "LA"))[:len(keys)]:
        got = np.array(r[key]["eigenvalues"])
        res = np.array(r[key]["residual_norms"])
        exact = problem.reference(6, which).numpy()
        assert np.all(np.abs(got - exact) <= res + rounding), (key, got - exact, res)
        single = _single(None, problem, "lanczos", 6, which, products="recomputed")
        assert np.allclose(got, single.eigenvalues.numpy(), rtol=0, atol=2 * tol * norm_a + rounding), key
        # the vectors gathered on rank 0 are eigenvectors: unit norm, residuals as reported (true global norms)
        assert r[key]["vector_rows"] == n
        assert np.allclose(r[key]["vector_norms"], 1.0, rtol=0, atol=1e3 * EPS)
        assert np.allclose(r[key]["vector_residuals"], res, rtol=1e-3, atol=1e2 * rounding)
        assert max(r[key]["vector_residuals"]) <= tol * norm_a
        stats = r[key]["stats"]
        assert stats["vectors"] == "sharded" and stats["reductions"]["reductions"] > 0
        assert stats["local"]["basis_bytes"] < 900 * 8 * 40  # this rank's rows only (max_basis + b = 44)
    for rank, report in enumerate(reports[1:], start=1):  # the other ranks keep their own rows
        start, stop = row_ranges(n, world)[rank]
        assert report["sharded"]["vector_rows"] == stop - start
    # Stop with sharded vectors: every rank STOPPED at the same iteration, as with replicated ones.
    assert r["sharded_stop"]["status"] == "stopped" and r["sharded_stop"]["n_iter"] == 4


@pytest.mark.timeout(200)
@pytest.mark.parametrize("world,victim", [(2, 1), (4, 2)])
def test_a_killed_rank_ends_the_others_with_a_message(world: int, victim: int, tmp_path: Path) -> None:
    runs = launch_local([str(WORKER), "kill", str(tmp_path), str(victim), "30"], world, timeout=180, env=_env())
    assert runs[victim].returncode == -9
    reports = {r: json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world) if r != victim}
    # gloo sees the closed connection at once; the timeout (30 s) is not what ends them.
    for rank, report in reports.items():
        assert runs[rank].returncode == 3, runs[rank].stderr[-2000:]
        assert report["error"] == "RankFailureError", report
        assert "did not complete" in report["message"]
    for report in reports.values():  # every survivor names the dead rank (and only it)
        assert f"Rank {victim} stopped responding" in report["message"], report["message"]


@pytest.mark.timeout(200)
def test_a_hung_rank_ends_the_others_after_the_timeout(tmp_path: Path) -> None:
    env = {**_env(), "EXPLORER_TEST_TIMEOUT": "4"}
    runs = launch_local([str(WORKER), "hang", str(tmp_path), "1", "30", "12"], 2, timeout=180, env=env)
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert runs[0].returncode == 3 and report["error"] == "RankFailureError"
    assert "still alive" in report["message"] and "timeout 4 s" in report["message"]


# ---------------------------------------------------------------------------------------
# The command line under torchrun
# ---------------------------------------------------------------------------------------
def _cli(args: list[str], *, nproc: int | None, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = ([str(TORCHRUN), "--nproc-per-node", str(nproc), "--master-port", str(_port())] if nproc else
           [sys.executable]) + ["-m", "explorer", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def _port() -> int:
    from explorer.distributed.launch import free_port

    return free_port()


@pytest.mark.timeout(500)
@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not installed")
def test_torchrun_solve_prints_the_single_process_eigenvalues_and_rank_0_stores_the_run() -> None:
    from explorer.store import RunStore

    args = ["solve", "laplacian_2d:40", "--solver", "lanczos", "-k", "6", "--which", "LA", "--json"]
    one = _cli(args, nproc=None)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _cli(args + ["--distributed", "--vectors", "replicated", "--name", "two ranks"], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    single, dist_ = json.loads(one.stdout), json.loads(two.stdout)  # rank 0 alone prints
    assert dist_["distributed"]["world_size"] == 2 and dist_["status"] == "converged"
    two_basis = dist_["distributed"]["local"]["basis_bytes"]  # replicated: the whole basis on each rank
    exact = laplacian_2d(40).reference(6, "LA").numpy()
    assert dist_["eigenvalues"] == single["eigenvalues"]  # Lanczos recomputes products in both: bit for bit
    assert dist_["n_matvec"] == single["n_matvec"]
    assert np.allclose(dist_["eigenvalues"], exact, rtol=0, atol=1e-6 * 8)
    store = RunStore(os.environ["EXPLORER_STORE"])
    info = store.run(dist_["run_id"])
    assert info.status == "converged" and info.name == "two ranks"
    history = store.history(dist_["run_id"])
    assert len(history) > 0  # the records of rank 0, streamed while it ran
    assert len(store.runs()) == 2  # one process and rank 0; the other rank wrote nothing
    assert info.problem == store.run(single["run_id"]).problem == "laplacian_2d(nx=40, ny=40)"
    # sharded vectors (what --distributed picks for Lanczos): the same values to tolerance (see
    # _check_sharded: each within its residual of the exact one, so within 2 tol ||A|| of one process's)
    sharded = _cli(args + ["--distributed", "--vectors", "sharded"], nproc=2)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    shard = json.loads(sharded.stdout)
    assert shard["status"] == "converged" and shard["distributed"]["vectors"] == "sharded"
    assert np.allclose(shard["eigenvalues"], single["eigenvalues"], rtol=0, atol=2 * 1e-6 * 8 + 1600 * EPS * 8)
    assert np.allclose(shard["eigenvalues"], exact, rtol=0, atol=1e-6 * 8)
    assert shard["distributed"]["local"]["basis_bytes"] < two_basis
    lobpcg = _cli(["solve", "laplacian_2d:20", "--solver", "lobpcg", "-k", "3", "--distributed", "--vectors",
                   "sharded"], nproc=2)
    assert lobpcg.returncode != 0 and "--vectors replicated" in lobpcg.stderr, lobpcg.stderr[-2000:]
    # hessian: the sample MLP's top eigenvalues against its dense Hessian
    from explorer.models.samples import read_manifest

    three = _cli(["hessian", str(MODELS / "mlp.pt2"), "--data", str(MODELS / "mlp_data.safetensors"), "-k", "3",
                  "--dtype", "float64", "--tol", "1e-8", "--distributed", "--json"], nproc=2)
    assert three.returncode == 0, three.stderr[-3000:]
    top_dense = [m for m in read_manifest(MODELS)["models"] if m["name"] == "mlp"][0]["hessian_top5"][:3]
    assert np.allclose(json.loads(three.stdout)["eigenvalues"], top_dense, rtol=1e-7)


@pytest.mark.timeout(200)
def test_under_torchrun_a_killed_rank_ends_rank_0_with_a_message(tmp_path: Path) -> None:
    """torchrun stops the survivors (SIGTERM) once a worker dies; rank 0 says why either way
    (gloo's closed connection or the SIGTERM, whichever comes first), and nothing hangs."""
    out = subprocess.run([str(TORCHRUN), "--nproc-per-node", "2", "--master-port", str(_port()), str(WORKER), "kill",
                          str(tmp_path), "1", "30"], capture_output=True, text=True, timeout=180, cwd=ROOT,
                         env={**os.environ, **_env(), "OMP_NUM_THREADS": "1"})
    assert out.returncode != 0
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["error"] == "RankFailureError"
    assert "SIGTERM" in report["message"] or "did not complete" in report["message"], report["message"]
    assert "rank 0: error:" in out.stderr


@pytest.mark.timeout(200)
def test_cli_hessian_one_process_and_the_refusals() -> None:
    from explorer.models.samples import read_manifest

    one = _cli(["hessian", str(MODELS / "mlp.pt2"), "--data", str(MODELS / "mlp_data.safetensors"), "-k", "2",
                "--dtype", "float64", "--tol", "1e-8", "--json", "--no-store"], nproc=None)
    assert one.returncode == 0, one.stderr[-2000:]
    top_dense = [m for m in read_manifest(MODELS)["models"] if m["name"] == "mlp"][0]["hessian_top5"][:2]
    assert np.allclose(json.loads(one.stdout)["eigenvalues"], top_dense, rtol=1e-7)
    out = _cli(["solve", "laplacian_2d:10", "--distributed"], nproc=None)
    assert out.returncode == 2 and "torchrun --nproc-per-node" in out.stderr
    env_run = subprocess.run([sys.executable, "-m", "explorer", "solve", "laplacian_2d:10"],
                             capture_output=True, text=True, timeout=100, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "RANK": "1"})
    assert env_run.returncode == 2 and "Add --distributed" in env_run.stderr
    missing = _cli(["hessian", "no_such.pt2", "--data", "x.pt"], nproc=None)
    assert missing.returncode == 2 and "no file `no_such.pt2`" in missing.stderr


# ---------------------------------------------------------------------------------------
# GPUs (NCCL)
# ---------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.timeout(300)
@pytest.mark.skipif(not torch.cuda.is_available() or not torch.distributed.is_nccl_available(),
                    reason="needs CUDA and NCCL")
def test_nccl_solve_on_one_gpu_per_rank() -> None:
    nproc = min(2, torch.cuda.device_count())
    out = _cli(["solve", "laplacian_2d:40", "--solver", "lanczos", "-k", "6", "--which", "LA", "--backend", "nccl",
                "--distributed", "--json"], nproc=nproc)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["distributed"]["backend"] == "nccl"
    assert np.allclose(result["eigenvalues"], laplacian_2d(40).reference(6, "LA").numpy(), rtol=0, atol=1e-6 * 8)
