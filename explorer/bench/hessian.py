"""Benchmark: top-5 Hessian eigenvalues of the sample MLP, our Lanczos against its peers.

Run::

    .venv/bin/python -m explorer.bench.hessian [--k 5] [--tol 1e-6] [--seeds 3] [--json out.json]

Peers (all on the *same* operator: ``HessianOperator`` of ``sample_data/models/mlp.pt2``
over its 256 samples, float64, cached double-backward HVPs, one torch thread):

* ``explorer lanczos``: the registry's thick-restart Lanczos, ``which="LA"``; once with
  its defaults (block size 2 for k >= 2, full reorthogonalization) and once with block
  size 1 (the Hessian's top eigenvalues are simple, see the reference below).
* ``he.lanczos``: hessian-eigenthings 1.0.0a5 ``lanczos`` (fixed length, no restart).
  It has no convergence loop, so as in ../shared/PEERS.md the harness doubles
  ``max_iter`` (20, 40, 80, ...) until its own Ritz test ``|beta_m s_mi| < tol |theta_i|``
  passes for all k, counting every attempt. Once with ``reorthogonalize=True`` and once
  with its default (reorthogonalization switched *off* above 50 steps), which shows the
  ghost problem.
* ``he.deflated_power_iteration``: hessian-eigenthings' power iteration with Hotelling
  deflation, ``tol`` on its own relative residual.
* ``scipy eigsh`` (ARPACK), ``which="LA"``, ``tol`` = its relative Ritz-estimate
  criterion: the reference peer of PEERS.md.

Every peer calls the same counting HVP, so "HVPs" is exact (one column = one HVP).
Reported per peer (median over seeds for HVPs and time, worst case for errors):
HVPs, wall and process CPU seconds, the largest relative eigenvalue error against the
dense Hessian (``torch.func.hessian`` + ``eigvalsh``), the largest true relative residual
``||H x - theta x|| / |theta|`` (computed afterwards, not counted), how many pairs the peer
*claims* converged, and **ghosts**: returned pairs that the peer claims converged but
that duplicate another returned value of a simple eigenvalue (or match no eigenvalue at
all). ``hessian-eigenthings`` is optional: without it those rows are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["PeerRun", "run_benchmark", "main"]


@dataclass
class PeerRun:
    """One peer on one seed."""

    peer: str
    seed: int
    hvps: int
    wall_s: float
    cpu_s: float
    eigenvalues: list[float]
    claimed_converged: int
    max_rel_error: float
    max_rel_residual: float
    ghosts: int
    missed: int
    note: str = ""
    attempts: list[int] = field(default_factory=list)


class CountingHVP:
    """The one HVP every peer calls; counts columns."""

    def __init__(self, operator: Any) -> None:
        self.operator = operator
        self.count = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.count += 1
        return self.operator.matvec(v)


def _match(values: torch.Tensor, spectrum: torch.Tensor, reference: torch.Tensor,
           claimed: torch.Tensor) -> tuple[float, int, int]:
    """(max relative error against the reference top-k, ghosts, missed).

    A claimed-converged value is a ghost when it lies nearest to an exact eigenvalue that
    another returned value already took and that eigenvalue is simple (no other exact
    eigenvalue within 1e-8 relative), or when it is not within 1e-4 relative of any
    eigenvalue. ``missed`` counts reference top-k eigenvalues no returned value matches
    to 1e-4 relative.
    """
    k = reference.numel()
    got = torch.sort(values, descending=True).values
    if got.numel() < k:
        err = math.inf
    else:
        err = float(((got[:k] - reference) / reference.abs()).abs().max())
    taken: dict[int, int] = {}
    ghosts = 0
    scale = float(spectrum.abs().max())
    for value, ok in zip(values.tolist(), claimed.tolist()):
        distance = (spectrum - value).abs()
        index = int(distance.argmin())
        if float(distance[index]) > 1e-4 * max(abs(value), 1e-8 * scale):
            ghosts += int(bool(ok))
            continue
        if index in taken:
            neighbours = int(((spectrum - spectrum[index]).abs() <= 1e-8 * scale).sum())
            if neighbours <= taken[index] and ok:
                ghosts += 1
        taken[index] = taken.get(index, 0) + 1
    missed = sum(1 for r in reference.tolist() if not bool(((values - r).abs() <= 1e-4 * abs(r)).any()))
    return err, ghosts, missed


def _true_residuals(operator: Any, values: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    # vectors: (n, k) columns
    out = []
    for j in range(vectors.shape[1]):
        x = vectors[:, j] / vectors[:, j].norm()
        out.append(float((operator.matvec(x) - values[j] * x).norm() / max(abs(float(values[j])), 1e-300)))
    return torch.tensor(out, dtype=torch.float64)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def run_benchmark(k: int = 5, tol: float = 1e-6, seeds: tuple[int, ...] = (0, 1, 2),
                  verbose: bool = True) -> dict[str, Any]:
    """Run every peer on every seed; returns the rows, the reference and the setup."""
    from explorer.models import HessianOperator, dense_hessian, load_dataset, load_exported_model
    from explorer.models.samples import MODEL_SAMPLE_DIR
    from explorer.operators import CallableOperator
    from explorer.solvers import SOLVERS, solve

    if "lanczos" not in SOLVERS:  # registered by explorer.solvers once its module is wired in
        import explorer.solvers.lanczos  # noqa: F401
    torch.set_num_threads(1)  # PEERS.md: one thread for everyone on a shared 2-core host
    model = load_exported_model(MODEL_SAMPLE_DIR / "mlp.pt2")
    data = load_dataset(MODEL_SAMPLE_DIR / "mlp_data.safetensors")
    H = HessianOperator(model, data, loss="cross_entropy", dtype=torch.float64)
    n = H.shape[0]
    log = print if verbose else (lambda *a, **kw: None)
    log(f"operator: {H.description} (n = {n})")
    (dense, t_dense, _) = _timed(lambda: dense_hessian(model, data, "cross_entropy", dtype=torch.float64))
    spectrum = torch.linalg.eigvalsh(dense)
    reference = spectrum.flip(0)[:k]
    gaps = (reference[:-1] - reference[1:]) / reference[:-1]
    log(f"reference: dense torch.func.hessian in {t_dense:.1f} s; top-{k} = "
        + ", ".join(f"{v:.6g}" for v in reference.tolist()) + f"; relative gaps {', '.join(f'{g:.3f}' for g in gaps)}")
    v = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(99))
    H.matvec(v)  # build the cached graph before timing
    (_, t_hvp, _) = _timed(lambda: [H.matvec(v) for _ in range(50)])
    t_hvp /= 50
    log(f"one HVP: {t_hvp * 1e3:.2f} ms (wall)")

    rows: list[PeerRun] = []

    def record(peer: str, seed: int, counter: CountingHVP, wall: float, cpu: float, values: torch.Tensor,
               vectors: torch.Tensor, claimed: torch.Tensor, note: str = "", attempts: list[int] | None = None) -> None:
        values = values.detach().cpu().double()
        err, ghosts, missed = _match(values, spectrum, reference, claimed)
        res = _true_residuals(H, values, vectors.detach().double())
        row = PeerRun(peer, seed, counter.count, wall, cpu, [float(x) for x in values], int(claimed.sum()), err,
                      float(res.max()) if res.numel() else math.nan, ghosts, missed, note, attempts or [])
        rows.append(row)
        log(f"  {peer:34s} seed {seed}: {row.hvps:5d} HVPs {wall:6.2f} s  err {err:.1e}  resid "
            f"{row.max_rel_residual:.1e}  claimed {row.claimed_converged}/{k}  ghosts {ghosts}  missed {missed}"
            + (f"  ({note})" if note else ""))

    # -- explorer lanczos ------------------------------------------------------------
    for label, extra in (("explorer lanczos (defaults)", {}), ("explorer lanczos (block_size=1)", {"block_size": 1}),
                         ("explorer lanczos (reorthogonalization='none')",
                          {"block_size": 1, "reorthogonalization": "none", "max_basis": 200})):
        for seed in seeds:
            counter = CountingHVP(H)
            op = CallableOperator(counter, n, dtype=torch.float64, name="counted Hessian")
            result, wall, cpu = _timed(lambda: solve("lanczos", op, k, which="LA", tol=tol, seed=seed, **extra))
            note = "" if result.status.ok else result.status.value
            record(label, seed, counter, wall, cpu, result.eigenvalues, result.eigenvectors, result.converged, note)

    # -- scipy eigsh -----------------------------------------------------------------
    import scipy.sparse.linalg as spla

    for seed in seeds:
        counter = CountingHVP(H)
        lin = spla.LinearOperator((n, n), matvec=lambda x: counter(torch.from_numpy(np.ascontiguousarray(x).reshape(-1)))
                                  .numpy(), dtype=np.float64)
        v0 = np.random.default_rng(seed).standard_normal(n)
        (vals, vecs), wall, cpu = _timed(lambda: spla.eigsh(lin, k=k, which="LA", tol=tol, v0=v0))
        order = np.argsort(vals)[::-1]
        record("scipy eigsh (ARPACK)", seed, counter, wall, cpu, torch.from_numpy(vals[order].copy()),
               torch.from_numpy(vecs[:, order].copy()), torch.ones(k, dtype=torch.bool))

    # -- hessian-eigenthings ---------------------------------------------------------
    try:
        import hessian_eigenthings as he
        version = getattr(he, "__version__", "1.0.0a5")
    except ImportError:
        log("hessian-eigenthings is not installed: `pip install --no-deps --pre hessian-eigenthings==1.0.0a5 tqdm`"
            " to add its rows")
        he = None
        version = None
    if he is not None:
        for label, reorth in (("he.lanczos (reorth=True, doubling)", True),
                              ("he.lanczos (default reorth, doubling)", None)):
            for seed in seeds:
                counter = CountingHVP(H)
                op = he.LambdaOperator(counter, n, dtype=torch.float64)
                attempts: list[int] = []

                def doubling() -> Any:
                    steps = 20
                    while True:
                        steps = min(steps, n - 1)
                        before = counter.count
                        res = he.lanczos(op, k=k, max_iter=steps, tol=tol, reorthogonalize=reorth, which="LA",
                                         seed=seed)
                        attempts.append(counter.count - before)
                        if bool(res.converged.all()) or steps >= n - 1 or steps >= 1280:
                            return res
                        steps *= 2

                res, wall, cpu = _timed(doubling)
                note = "" if bool(res.converged.all()) else "not converged"
                record(label, seed, counter, wall, cpu, res.eigenvalues, res.eigenvectors.T, res.converged, note,
                       attempts)
        for seed in seeds:  # one long run: the library's default turns reorthogonalization off above 50 steps
            counter = CountingHVP(H)
            op = he.LambdaOperator(counter, n, dtype=torch.float64)
            res, wall, cpu = _timed(lambda: he.lanczos(op, k=k, max_iter=200, tol=tol, which="LA", seed=seed))
            record("he.lanczos (max_iter=200, default reorth)", seed, counter, wall, cpu, res.eigenvalues,
                   res.eigenvectors.T, res.converged)
        for seed in seeds:
            counter = CountingHVP(H)
            op = he.LambdaOperator(counter, n, dtype=torch.float64)
            res, wall, cpu = _timed(lambda: he.deflated_power_iteration(op, k=k, tol=tol, max_iter=20_000, seed=seed))
            note = "" if bool(res.converged.all()) else "not converged within max_iter=20000 per pair"
            record("he.deflated_power_iteration", seed, counter, wall, cpu, res.eigenvalues, res.eigenvectors.T,
                   res.converged, note)

    summary = _summarize(rows)
    return {"setup": {"operator": H.description, "n": n, "k": k, "tol": tol, "seeds": list(seeds),
                      "hvp_ms": t_hvp * 1e3, "torch": torch.__version__, "hessian_eigenthings": version,
                      "threads": 1},
            "reference": {"top": reference.tolist(), "method": "torch.func.hessian + eigvalsh (float64)"},
            "summary": summary, "runs": [asdict(r) for r in rows]}


def _summarize(rows: list[PeerRun]) -> list[dict[str, Any]]:
    peers: dict[str, list[PeerRun]] = {}
    for row in rows:
        peers.setdefault(row.peer, []).append(row)
    out = []
    for peer, runs in peers.items():
        out.append({
            "peer": peer,
            "hvps_median": statistics.median(r.hvps for r in runs),
            "hvps_range": f"{min(r.hvps for r in runs)}-{max(r.hvps for r in runs)}",
            "wall_s_median": statistics.median(r.wall_s for r in runs),
            "cpu_s_median": statistics.median(r.cpu_s for r in runs),
            "max_rel_error": max(r.max_rel_error for r in runs),
            "max_rel_residual": max(r.max_rel_residual for r in runs),
            "ghosts_claimed_converged": sum(r.ghosts for r in runs),
            "missed": sum(r.missed for r in runs),
            "all_claimed_converged": all(r.claimed_converged == len(r.eigenvalues) for r in runs),
        })
    return out


def format_table(report: dict[str, Any]) -> str:
    setup = report["setup"]
    lines = [
        f"Top-{setup['k']} Hessian eigenvalues, {setup['operator']}; tol {setup['tol']:g} (relative residual); "
        f"seeds {setup['seeds']}; one HVP = {setup['hvp_ms']:.2f} ms; 1 thread",
        "",
        "| peer | HVPs (median, range) | wall s | CPU s | max rel. eig. error vs dense | max rel. residual | "
        "ghosts claimed converged | missed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in report["summary"]:
        lines.append(f"| {s['peer']} | {s['hvps_median']:g} ({s['hvps_range']}) | {s['wall_s_median']:.3f} | "
                     f"{s['cpu_s_median']:.3f} | {s['max_rel_error']:.1e} | {s['max_rel_residual']:.1e} | "
                     f"{s['ghosts_claimed_converged']} | {s['missed']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--seeds", type=int, default=3, help="number of random starts (0, 1, ...)")
    parser.add_argument("--json", type=str, default=None, help="write the full report here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    report = run_benchmark(k=args.k, tol=args.tol, seeds=tuple(range(args.seeds)))
    print()
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
