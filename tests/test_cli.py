"""The command line: solve (JSON, progress, exit codes, the store), runs, samples, bad input, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explorer import problems
from explorer.cli import main
from explorer.cli.args import EXIT_INTERRUPTED, EXIT_NOT_CONVERGED, EXIT_OK, EXIT_USAGE
from explorer.problems.files import save_matrix
from explorer.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_solve_json_matches_the_exact_spectrum_and_lands_in_the_store(capsys, tmp_path):
    store = tmp_path / "cli.sqlite"
    code, out, err = _run(capsys, "solve", "laplacian_2d:30", "--solver", "lanczos", "-k", "6", "--which", "LA",
                          "--tol", "1e-8", "--store", str(store), "--json", "--name", "from the cli")
    assert code == EXIT_OK, err
    payload = json.loads(out)
    assert set(payload) == {"run_id", "status", "eigenvalues", "residual_norms", "n_matvec", "elapsed"}
    assert payload["status"] == "converged" and payload["n_matvec"] > 0 and payload["elapsed"] > 0
    exact = problems.laplacian_2d(30).reference(6, "LA").numpy()
    lam_max = float(exact[0])
    # each pair's residual bounds the distance to an eigenvalue: |theta - lambda| <= ||r|| <= tol * |theta|
    assert np.allclose(payload["eigenvalues"], exact, rtol=0, atol=2e-8 * lam_max)
    assert all(r <= 1e-8 * lam_max for r in payload["residual_norms"])
    run = RunStore(store).run(payload["run_id"])
    assert (run.source, run.name, run.solver, run.k, run.status) == ("cli", "from the cli", "lanczos", 6, "converged")
    assert run.problem == "laplacian_2d(nx=30, ny=30)" and run.n == 900
    assert np.allclose(run.reference, exact) and run.n_records > 0
    assert run.n_matvec == payload["n_matvec"]
    # the progress line: iteration, converged/k, best residual, matvecs
    assert "iteration" in err and "converged 6/6" in err and "best residual" in err and "matvecs" in err


def test_generator_spec_is_the_python_call(capsys):
    code, out, err = _run(capsys, "solve", "laplacian_2d:12,8", "-k", "2", "--json", "-q", "--no-store")
    assert code == EXIT_OK, err
    exact = problems.laplacian_2d(12, 8).reference(2, "LA").numpy()
    assert np.allclose(json.loads(out)["eigenvalues"], exact, atol=1e-5)
    code, out, _ = _run(capsys, "solve", "prescribed_spectrum:n=60,spectrum=linear,low=1,high=60", "-k", "3",
                        "--solver", "eigh", "--json", "-q", "--no-store")
    assert code == EXIT_OK and np.allclose(json.loads(out)["eigenvalues"], [60, 59, 58])
    assert json.loads(out)["run_id"] is None


def test_a_matrix_file_and_a_generalized_pair(capsys, tmp_path):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((60, 60))
    A = M + M.T
    save_matrix(tmp_path / "A.npy", A)
    code, out, err = _run(capsys, "solve", str(tmp_path / "A.npy"), "--solver", "lobpcg", "-k", "3", "--which", "SA",
                          "--tol", "1e-9", "--json", "-q")
    assert code == EXIT_OK, err
    assert np.allclose(json.loads(out)["eigenvalues"], np.linalg.eigvalsh(A)[:3], atol=1e-7)
    pair = problems.mikota_pair(40)
    save_matrix(tmp_path / "K.mtx", pair.operator)
    save_matrix(tmp_path / "M.mtx", pair.B)
    code, out, err = _run(capsys, "solve", str(tmp_path / "K.mtx"), "--B", str(tmp_path / "M.mtx"), "--solver",
                          "lobpcg", "-k", "3", "--which", "SA", "--tol", "1e-8", "--json", "-q")
    assert code == EXIT_OK, err
    assert np.allclose(json.loads(out)["eigenvalues"], [1, 4, 9], rtol=1e-6)
    code, _, err = _run(capsys, "solve", str(tmp_path / "K.mtx"), "--B", str(tmp_path / "M.mtx"), "--solver",
                        "lanczos", "-q")
    assert code == EXIT_USAGE and "solves a generalized problem A x = \u03bb B x only with sigma" in err
    # with a shift, lanczos solves the pencil: the eigenvalues i^2 nearest 10 (9, then 4 and 16 tie, then 1)
    code, out, err = _run(capsys, "solve", str(tmp_path / "K.mtx"), "--B", str(tmp_path / "M.mtx"), "--solver",
                          "lanczos", "--sigma", "10", "-k", "4", "--tol", "1e-10", "--json", "-q")
    assert code == EXIT_OK, err
    values = json.loads(out)["eigenvalues"]
    assert np.allclose(values[0], 9, rtol=1e-9) and np.allclose(sorted(values), [1, 4, 9, 16], rtol=1e-9)


def _app_message(filename: str, data: bytes, **kwargs) -> str:
    """What the app says for this upload (explorer.problems.sources, the Explore page's loader)."""
    from explorer.problems.sources import ProblemSource, load_problem
    from explorer.runs.jobs import friendly_error

    with pytest.raises((ValueError, TypeError)) as info:
        load_problem(ProblemSource.upload(filename, data, **kwargs), data)
    return friendly_error(info.value)


def test_bad_files_exit_2_with_the_apps_messages(capsys, tmp_path):
    nonsym = tmp_path / "nonsym.npy"
    np.save(nonsym, np.arange(16.0).reshape(4, 4))
    corrupt = tmp_path / "broken.mtx"
    corrupt.write_text("%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 oops\n")
    for path in (nonsym, corrupt):
        code, out, err = _run(capsys, "solve", str(path), "-q")
        assert code == EXIT_USAGE and out == ""
        assert err.strip() == f"error: {_app_message(path.name, path.read_bytes())}"
    code, _, err = _run(capsys, "solve", str(nonsym), "--symmetrize", "-k", "1", "--solver", "eigh", "-q")
    assert code == EXIT_OK, err


@pytest.mark.parametrize("argv,fragment", [
    (["solve", "missing.mtx"], "does not exist"),
    (["solve", "no_such_problem"], "is not a file, a generator or a sample"),
    (["solve", "laplacian_2d:abc"], "`nx` must be an integer"),
    (["solve", "laplacian_2d:30,30,30"], "takes at most 2 values"),
    (["solve", "laplacian_2d:nx=30,color=red"], "unexpected parameter"),
    (["solve", "laplacian_2d:30", "-k", "0"], "`k` must be >= 1"),
    (["solve", "laplacian_2d:30", "--which", "XX"], "supports LA, SA"),
    (["solve", "laplacian_2d:30", "--tol", "2"], "`tol` must be <= 1.0"),
    (["solve", "laplacian_2d:30", "--dtype", "float16"], "float32"),
    (["solve", "laplacian_2d:30", "--device", "tpu9"], "not a device name"),
    (["solve", "laplacian_2d:30", "--param", "nope=1"], "has no parameter `nope`"),
    (["solve", "laplacian_2d:30", "--param", "reorthogonalization=sometimes"], "must be one of"),
    (["solve", "laplacian_2d:30", "--solver", "power_iteration", "--which", "SA"], "supports LM"),
])
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, fragment):
    code, out, err = _run(capsys, *argv, "-q")
    assert code == EXIT_USAGE and fragment in err and err.startswith("error: ") and "Traceback" not in err


def test_a_bad_setting_found_by_the_solver_is_stored_as_failed(capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    code, out, err = _run(capsys, "solve", "laplacian_2d:5", "-k", "40", "--store", str(store), "--json", "-q")
    assert code == EXIT_USAGE and "`k` must satisfy" in err
    payload = json.loads(out)
    assert payload["status"] == "failed" and payload["eigenvalues"] == []
    run = RunStore(store).run(payload["run_id"])
    assert run.status == "failed" and "`k` must satisfy" in run.message and run.k == 40


def test_not_converging_exits_3(capsys):
    code, out, err = _run(capsys, "solve", "laplacian_2d:30", "--max-iter", "3", "--json", "-q")
    assert code == EXIT_NOT_CONVERGED and json.loads(out)["status"] == "max_iter reached"


def test_runs_lists_what_solve_stored(capsys, tmp_path):
    store = str(tmp_path / "r.sqlite")
    for which in ("LA", "SA"):
        assert _run(capsys, "solve", "laplacian_1d:50", "-k", "2", "--which", which, "--store", store, "-q")[0] == 0
    code, out, err = _run(capsys, "runs", "--store", store)
    assert code == EXIT_OK and "laplacian_1d(n=50)" in out and out.count("converged") == 2
    assert "2 runs in" in err
    code, out, _ = _run(capsys, "runs", "--store", store, "--json", "--limit", "1")
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["which"] == "SA" and rows[0]["status"] == "converged"
    assert isinstance(rows[0]["n_matvec"], int)


def test_samples_lists_sources(capsys):
    code, out, _ = _run(capsys, "samples")
    assert code == EXIT_OK and "laplacian2d_30x30" in out
    code, out, err = _run(capsys, "solve", "laplacian2d_30x30", "-k", "2", "--json", "-q", "--no-store")
    assert code == EXIT_OK, err
    assert np.allclose(json.loads(out)["eigenvalues"], problems.laplacian_2d(30).reference(2, "LA").numpy(),
                       atol=1e-5)


def _python(*argv: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "explorer", *argv], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})},
                            **kwargs)


@pytest.mark.slow
def test_python_m_explorer_end_to_end(tmp_path):
    proc = _python("solve", "laplacian_2d:20", "-k", "3", "--json", env={"EXPLORER_STORE": str(tmp_path / "e.sqlite")})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_OK, err
    assert json.loads(out)["run_id"] == 1
    proc = _python("solve")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_USAGE and "SOURCE" in err  # argparse's usage error


@pytest.mark.slow
def test_ctrl_c_stops_the_solve_and_keeps_the_partial_run(tmp_path):
    store = tmp_path / "c.sqlite"
    proc = _python("solve", "laplacian_2d:120", "--solver", "lobpcg", "-k", "8", "--which", "SA", "--tol", "1e-14",
                   "--max-iter", "100000", "--json", env={"EXPLORER_STORE": str(store)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if store.exists():
            frame = RunStore(store).runs()
            if len(frame) and frame["n_records"].iloc[0] >= 3:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    payload = json.loads(out)
    assert payload["status"] == "stopped" and len(payload["eigenvalues"]) == 8
    run = RunStore(store).run(payload["run_id"])
    assert run.status == "stopped" and "Ctrl-C" in run.message and run.n_records >= 3


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_solve_on_the_gpu_is_stored_like_any_other(capsys, tmp_path):
    store = tmp_path / "gpu.sqlite"
    code, out, err = _run(capsys, "solve", "laplacian_2d:100", "--solver", "lanczos", "-k", "6", "--tol", "1e-8",
                          "--device", "cuda", "--store", str(store), "--json", "-q")
    assert code == EXIT_OK, err
    payload = json.loads(out)
    exact = problems.laplacian_2d(100).reference(6, "LA").numpy()
    assert np.allclose(payload["eigenvalues"], exact, atol=2e-8 * exact[0])
    info = RunStore(store).run(payload["run_id"])
    assert info.device.startswith("cuda") and info.n_records > 0
    assert len(RunStore(store).history(info.id)) == 6 * info.n_records


# -- interior eigenvalues: --sigma, --lower/--upper, --factorization --------------------------------
def test_sigma_gives_the_eigenvalues_nearest_it_and_stores_that_reference(capsys, tmp_path):
    store = tmp_path / "si.sqlite"
    code, out, err = _run(capsys, "solve", "laplacian_2d:20", "--sigma", "1.0", "--tol", "1e-9", "--store", str(store),
                          "--json", "-q")
    assert code == EXIT_OK, err
    payload = json.loads(out)
    assert payload["sigma"] == 1.0 and payload["status"] == "converged"
    exact = problems.laplacian_2d(20).eigenvalues.numpy()
    nearest = exact[np.argsort(np.abs(exact - 1.0), kind="stable")[:4]]  # which defaults to LM: the nearest
    residuals = np.asarray(payload["residual_norms"])
    # each residual bounds the distance to an eigenvalue, so the values match the closed form that closely
    assert np.all(np.abs(np.asarray(payload["eigenvalues"]) - nearest) <= residuals + 1e-13)
    run = RunStore(store).run(payload["run_id"])
    assert run.which == "LM" and np.allclose(run.reference, nearest)
    code, out, err = _run(capsys, "solve", "laplacian_2d:20", "--sigma", "1.0", "--which", "SA", "--factorization",
                          "lu", "-k", "2", "--json", "-q", "--no-store")
    assert code == EXIT_OK, err
    below = np.sort(exact[exact < 1.0])[::-1][:2]
    assert np.allclose(json.loads(out)["eigenvalues"], below, atol=1e-7)


def test_an_interval_returns_every_eigenvalue_in_it_with_the_inertia_count(capsys, tmp_path):
    store = tmp_path / "slice.sqlite"
    exact = problems.laplacian_2d(20).eigenvalues.numpy()
    inside = np.sort(exact[(exact >= 1.0) & (exact < 1.5)])
    assert inside.size > 4  # more than the default k: the interval decides the count
    code, out, err = _run(capsys, "solve", "laplacian_2d:20", "--lower", "1", "--upper", "1.5", "--tol", "1e-9",
                          "--store", str(store), "--json", "-q")
    assert code == EXIT_OK, err
    payload = json.loads(out)
    assert payload["interval"] == {"lower": 1.0, "upper": 1.5, "count": int(inside.size)}
    assert np.allclose(payload["eigenvalues"], inside, atol=1e-8)
    run = RunStore(store).run(payload["run_id"])
    assert np.allclose(run.reference, inside) and run.n_converged == inside.size
    code, out, err = _run(capsys, "solve", "laplacian_2d:20", "--lower", "1", "--upper", "1.5", "--no-store", "-q")
    assert code == EXIT_OK and f"so {inside.size} eigenvalues lie in [1, 1.5)" in out and "none was missed" in out
    # the text table compares with the interval's exact eigenvalues, not with the largest ones
    assert f"{inside[0]:.10g}" in out and f"{exact.max():.10g}" not in out
    code, _, err = _run(capsys, "solve", "laplacian_2d:20", "--lower", "1", "--upper", "1.5", "-k", "5", "-q",
                        "--no-store")
    assert code == EXIT_USAGE and f"holds {inside.size} eigenvalues" in err and f"raise `k` to {inside.size}" in err


@pytest.mark.parametrize("argv,fragment", [
    (["--sigma", "4"], "is an eigenvalue of the problem to rounding"),  # lambda_i + lambda_(21-i) = 4 exactly
    (["--lower", "1"], "needs both ends"),
    (["--sigma", "1", "--lower", "1", "--upper", "2"], "not both"),
    (["--sigma", "1", "--which", "BE"], "with --sigma, --which is LM"),
    (["--lower", "1", "--upper", "2", "--which", "LM"], "has no meaning there"),
    (["--lower", "2", "--upper", "1"], "lower < upper"),
    (["--sigma", "1", "--solver", "power_iteration"], "--sigma applies to the solvers with shift-invert"),
    (["--sigma", "1", "--factorization", "cholesky"], "'cholesky' is for dense matrices"),
    (["--sigma", "1", "--param", "sigma=2"], "say different things"),
])
def test_bad_interior_settings_exit_2_with_a_clear_message(capsys, tmp_path, argv, fragment):
    store = tmp_path / "bad.sqlite"
    code, out, err = _run(capsys, "solve", "laplacian_2d:20", *argv, "--store", str(store), "-q", "--json")
    assert code == EXIT_USAGE and fragment in err and err.startswith("error: ") and "Traceback" not in err
    assert json.loads(out)["status"] == "failed" if out else True


def test_a_singular_shift_suggests_a_shift_and_is_stored_as_failed(capsys, tmp_path):
    store = tmp_path / "sing.sqlite"
    code, out, err = _run(capsys, "solve", "laplacian_2d:20", "--sigma", "4", "--store", str(store), "--json", "-q")
    assert code == EXIT_USAGE and "Move sigma a little, e.g. sigma = " in err
    payload = json.loads(out)
    assert payload["status"] == "failed" and payload["eigenvalues"] == []
    assert RunStore(store).run(payload["run_id"]).status == "failed"


def _known_svd(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    V, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    s = np.geomspace(10.0, 0.1, min(m, n))
    return U @ np.diag(s) @ V.T, s


def test_a_rectangular_file_is_solved_for_singular_values(capsys, tmp_path):
    A, s = _known_svd(60, 35)
    save_matrix(tmp_path / "tall.npy", A)
    store = tmp_path / "svd.sqlite"
    code, out, err = _run(capsys, "solve", str(tmp_path / "tall.npy"), "-k", "3", "--tol", "1e-10", "--store",
                          str(store), "--json", "-q")
    assert code == EXIT_OK, err
    payload = json.loads(out)
    assert "eigenvalues" not in payload and np.allclose(payload["singular_values"], s[:3], rtol=1e-9)
    run = RunStore(store).run(payload["run_id"])
    assert run.solver == "golub_kahan" and run.status == "converged" and run.n == 35
    code, out, err = _run(capsys, "solve", str(tmp_path / "tall.npy"), "-k", "2", "--which", "SA", "--no-store", "-q")
    assert code == EXIT_OK and "singular_value" in out and "golub_kahan on file" in out, err
    code, out, err = _run(capsys, "solve", str(tmp_path / "tall.npy"), "--solver", "lanczos", "--json", "-q",
                          "--no-store")
    assert code == EXIT_USAGE and out == ""
    assert "60 x 35 (singular values): use an SVD solver (golub_kahan)" in err and "--solver golub_kahan" in err
    code, _, err = _run(capsys, "solve", str(tmp_path / "tall.npy"), "--sigma", "1", "-q", "--no-store")
    assert code == EXIT_USAGE and "golub_kahan has no `sigma` (it computes singular values)" in err


def test_interior_eigenvalues_are_refused_with_distributed(capsys):
    for extra in (["--sigma", "1"], ["--lower", "1", "--upper", "2"], ["--param", "sigma=1"]):
        code, out, err = _run(capsys, "solve", "laplacian_2d:20", "--distributed", *extra, "-q", "--no-store")
        assert code == EXIT_USAGE and "run in one process only: drop --distributed" in err
