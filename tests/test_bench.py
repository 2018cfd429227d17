"""Smoke test of the benchmark code path (explorer.bench) on tiny problems: seconds, not minutes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explorer import bench


@pytest.fixture(scope="module")
def tiny_table():  # noqa: ANN201 - a pandas DataFrame
    # (the dense spectra end at exactly 0, so only their largest values have a relative error)
    problems = (bench.make_problems(["laplace2d_N12"], cases=[(3, "LA"), (2, "SA")])
                + bench.make_problems(["dense_cluster_n150"], cases=[(3, "LA")]))
    solvers = ("lanczos", "lanczos_partial", "arpack", "primme", "scipy_lobpcg", "torch_lobpcg")
    return bench.run_benchmark(problems, solvers, cap_s=20.0, overhead_max_s=0.0)


def test_table_has_the_expected_columns_and_rows(tiny_table) -> None:  # noqa: ANN001
    assert list(tiny_table.columns) == bench.COLUMNS
    assert len(tiny_table) == 3 * 6  # (problem, case) pairs x solvers
    assert set(tiny_table["status"]) <= {"done", "CAP", "FAIL", "skip"}


def test_our_lanczos_is_accurate_and_ratios_are_against_arpack(tiny_table) -> None:  # noqa: ANN001
    ours = tiny_table[tiny_table["solver"] == "lanczos"]
    assert (ours["status"] == "done").all() and ours["ok"].all()
    # tol = 1e-6 relative residual: |theta - lambda| <= ||r|| <= 1e-6 |theta| (plus rounding),
    # and a missed copy of a double eigenvalue would be off by a whole gap (>= 1e-4 here)
    assert (ours["eig_err"] <= 1.1e-6).all()
    assert (ours["resid"] <= 1.1e-6).all()
    assert (ours["matvecs"] > 0).all() and np.isfinite(ours["mv/arpack"]).all()
    arpack = tiny_table[(tiny_table["solver"] == "arpack") & (tiny_table["status"] == "done")]
    assert np.allclose(arpack["mv/arpack"], 1.0) and np.allclose(arpack["wall/arpack"], 1.0)


def test_the_laplacian_reference_is_the_closed_form() -> None:
    problem = bench.make_problems(["laplace2d_N12"])[0]
    c = 2.0 * np.cos(np.arange(1, 13) * np.pi / 13)
    exact = np.sort((4.0 - c[:, None] - c[None, :]).ravel())
    np.testing.assert_allclose(problem.eigenvalues, exact, rtol=0, atol=1e-13)
    np.testing.assert_allclose(problem.reference(3, "LA"), exact[::-1][:3])


def test_a_run_over_the_cap_is_reported_not_raised() -> None:
    problems = bench.make_problems(["laplace2d_N12"], cases=[(2, "LA")])
    table = bench.run_benchmark(problems, ("lanczos", "arpack"), cap_s=-1.0)
    assert (table["status"] == "CAP").all()
    assert all(note.startswith("CAP(") for note in table["note"])
    assert table["eig_err"].isna().all()


def test_tracker_overhead_columns_are_filled_for_quick_solves() -> None:
    problems = bench.make_problems(["laplace2d_N12"], cases=[(2, "LA")])
    table = bench.run_benchmark(problems, ("lanczos",), cap_s=20.0, overhead_max_s=10.0)
    row = table.iloc[0]
    assert math.isfinite(row["tracker_%"]) and 0.0 <= row["record_%"] < 100.0


def test_unknown_problem_key_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown problem key"):
        bench.make_problems(["laplace3d_N10"])


def test_cli_prints_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--problems", "laplace2d_N10", "--solvers", "lanczos", "arpack", "--cap", "20"]) == 0
    out = capsys.readouterr().out
    assert "mv/arpack" in out and "wall/arpack" in out and "tracker overhead" in out
