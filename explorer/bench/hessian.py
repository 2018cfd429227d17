"""Benchmark: top Hessian eigenvalues of a model, our Lanczos against its peers.

Run::

    .venv/bin/python -m explorer.bench.hessian [--k 5] [--tol 1e-6] [--seeds 3] [--json out.json]
    .venv/bin/python -m explorer.bench.hessian --model transformer:100M --device cuda --dtype float32 \\
        --k 10 --seeds 1 --peers lanczos torch_lobpcg

The operator (every peer calls the *same* one): ``HessianOperator`` with cached
double-backward HVPs, one torch thread on the CPU, of

* ``--model mlp`` (default): ``sample_data/models/mlp.pt2`` over its 256 samples, float64;
* ``--model transformer:SIZE`` (e.g. ``transformer:100M``, ``transformer:20k``): a GPT-like
  decoder generated in memory (``explorer.bench.models``: seeded random weights, random token
  sequences, cross-entropy over the flattened (batch seq, vocab) logits), no download.

``--device cuda[:i]`` / ``--dtype float32|float64`` place the operator (and so every peer's
products); on CUDA times are wall seconds between ``torch.cuda.synchronize`` calls (CPU time
says nothing there), on the CPU both are reported and the cap is CPU seconds.

Peers (``--peers`` picks them; default: all that apply):

* ``lanczos``: the registry's thick-restart Lanczos, ``which="LA"``, its defaults (block size
  2 for k >= 2); ``lanczos_b1``: block size 1 (the Hessian's top eigenvalues are simple);
  ``lanczos_none``: ``reorthogonalization='none'`` (ghosts; sample MLP only by default).
  ``--max-basis`` sets their basis size (memory: max_basis vectors of n entries).
* ``torch_lobpcg``: ``torch.lobpcg(method="ortho")``. It only takes a Tensor, so, as in
  ../shared/PEERS.md section 3, it gets a stand-in with the operator's shape, dtype and device,
  and ``torch._linalg_utils.matmul`` is patched for the call to apply the counted HVP to each
  column. Its tolerance is relative to a crude norm estimate ``||H X0|| / ||X0||`` plus
  ``|lambda|``; the relative ``tol`` is mapped onto it with the k-th reference eigenvalue (the
  dense one, or without it the k-th value our ``lanczos`` row returned: only a scale).
* ``eigsh``: scipy's ARPACK, ``which="LA"``, ``tol`` = its relative Ritz-estimate criterion,
  the reference peer of PEERS.md. On the CPU; with a CUDA operator each product copies its
  vector to the device and back (skipped above n = 2 10^6, where ARPACK's own O(n ncv) CPU work
  would dominate).
* hessian-eigenthings 1.0.0a5 (optional; sample MLP): ``he_lanczos`` (fixed length, no
  restart: as in PEERS.md the harness doubles ``max_iter`` 20, 40, 80, ... until its own Ritz
  test ``|beta_m s_mi| < tol |theta_i|`` passes for all k, counting every attempt; with
  ``reorthogonalize=True``), ``he_lanczos_default`` (its default, reorthogonalization switched
  off above 50 steps: the ghost problem), ``he_lanczos_200`` (one run of 200 steps, default
  reorthogonalization), ``he_power`` (deflated power iteration, ``tol`` on its own residual).

Every peer calls the same counting HVP, so "HVPs" is exact (one column = one HVP). Each run
stops past ``--cap`` seconds (CPU seconds on the CPU, wall seconds on CUDA; inside the counting
HVP, like the matrix bench): such rows read CAP. Reported per peer (median over seeds for HVPs
and time, worst case for errors): HVPs, wall and process CPU seconds, the overhead
``time / (HVPs x t_hvp)`` (t_hvp: one HVP, the fastest of a few timed before the runs), the
largest true relative residual ``||H x - theta x|| / |theta|`` (computed afterwards with the
operator, in its dtype, not counted), how many pairs the peer *claims* converged and, where
there is a dense reference: the largest relative eigenvalue error against the dense Hessian
(``explorer.models.dense_hessian`` + ``eigvalsh`` in float64 on the CPU, for n <= ``--max-dense``) and
**ghosts**: returned pairs that the peer claims converged but that duplicate another returned
value of a simple eigenvalue (or match no eigenvalue at all). Without a dense reference (large
models) those columns are empty and the header says so; the residuals are then the evidence.
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
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["PeerRun", "CountingHVP", "HVPCapReached", "PEERS", "build_operator", "run_benchmark", "main"]

PEERS = ("lanczos", "lanczos_b1", "lanczos_none", "eigsh", "torch_lobpcg", "he_lanczos", "he_lanczos_default",
         "he_lanczos_200", "he_power")
LABELS = {
    "lanczos": "explorer lanczos (defaults)",
    "lanczos_b1": "explorer lanczos (block_size=1)",
    "lanczos_none": "explorer lanczos (reorthogonalization='none')",
    "eigsh": "scipy eigsh (ARPACK)",
    "torch_lobpcg": "torch.lobpcg (method='ortho')",
    "he_lanczos": "he.lanczos (reorth=True, doubling)",
    "he_lanczos_default": "he.lanczos (default reorth, doubling)",
    "he_lanczos_200": "he.lanczos (max_iter=200, default reorth)",
    "he_power": "he.deflated_power_iteration",
}
# Largest n for a dense reference (dense_hessian: n^2 float64 entries and ~n HVPs of work).
MAX_DENSE = 3000
# eigsh drives a CUDA operator through host copies only up to this n (module docstring).
EIGSH_CUDA_MAX_N = 2_000_000


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
    status: str = "done"
    overhead: float = math.nan


class HVPCapReached(Exception):
    """Raised inside :class:`CountingHVP` when a run exceeds its time cap."""


class CountingHVP:
    """The one HVP every peer calls; counts columns and stops a run past ``cap_s`` seconds of ``clock``."""

    def __init__(self, operator: Any, cap_s: float = math.inf, clock: Callable[[], float] = time.process_time) -> None:
        self.operator = operator
        self.count = 0
        self.cap_s = cap_s
        self.clock = clock
        self.t0 = clock()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.count += 1
        if self.clock() - self.t0 > self.cap_s:
            raise HVPCapReached(f"CAP({self.count - 1})")
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
    """``||H x - theta x|| / |theta|`` per column of ``vectors`` (n, k), with the operator in its dtype."""
    out = []
    for j in range(vectors.shape[1]):
        x = vectors[:, j].to(device=operator.device, dtype=operator.dtype)
        x = x / x.norm()
        theta = float(values[j])
        out.append(float((operator.matvec(x) - theta * x).norm()) / max(abs(theta), 1e-300))
    return torch.tensor(out, dtype=torch.float64)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device = torch.device("cpu")) -> tuple[Any, float, float]:
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - w0, time.process_time() - c0


def build_operator(model: str = "mlp", *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                   batch: int = 8, seed: int = 0) -> tuple[Any, str]:
    """The Hessian operator of ``model`` (``"mlp"`` or ``"transformer:SIZE"``) and a description of the model."""
    from explorer.bench.models import parse_model_spec, transformer
    from explorer.models import HessianOperator, load_dataset, load_exported_model
    from explorer.models.samples import MODEL_SAMPLE_DIR

    kind, size = parse_model_spec(model)
    if kind == "mlp":
        net = load_exported_model(MODEL_SAMPLE_DIR / "mlp.pt2")
        data = load_dataset(MODEL_SAMPLE_DIR / "mlp_data.safetensors")
        return HessianOperator(net, data, loss="cross_entropy", dtype=dtype, device=device), "sample MLP"
    gpt, data = transformer(size, batch=batch, seed=seed, dtype=dtype, device=device)
    text = f"{gpt.config.describe()}, {batch} random sequences of {gpt.config.seq} tokens"
    H = HessianOperator(gpt, data, loss="cross_entropy", dtype=dtype, device=device)
    del gpt
    if torch.device(device).type != "cpu":  # the operator keeps its own copy on the device
        H.model.module.to("cpu")
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return H, text


class _TorchOperand:
    """What ``torch.lobpcg`` reads from its ``A`` besides the products (shape, dtype, device)."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.shape = torch.Size((n, n))
        self.dtype = dtype
        self.device = device
        self.requires_grad = False
        self.is_sparse = False
        self.layout = torch.strided

    def dim(self) -> int:
        return 2


def _torch_lobpcg(counter: CountingHVP, n: int, k: int, tol: float, seed: int, scale: float | None,
                  dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    import torch._linalg_utils as lu

    operand = _TorchOperand(n, dtype, device)
    original = lu.matmul

    def product(first: Any, second: torch.Tensor) -> torch.Tensor:
        if first is operand:
            columns = second if second.ndim > 1 else second.unsqueeze(1)
            out = torch.stack([counter(columns[:, j].contiguous()) for j in range(columns.shape[1])], dim=1)
            return out if second.ndim > 1 else out.squeeze(1)
        return original(first, second)

    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, k, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    lu.matmul = product
    try:
        # torch's criterion ||r|| / ((||H||_est + |lambda|) ||x||) with ||H||_est = ||H X0||_F / ||X0||_F:
        # map the relative tol onto it (PEERS.md section 3); the estimate's k HVPs are counted
        rms = float(torch.linalg.matrix_norm(product(operand, X)) / torch.linalg.matrix_norm(X))
        lam = abs(scale) if scale else rms
        mapped = tol * lam / (rms + lam)
        values, vectors = torch.lobpcg(operand, k=k, X=X, largest=True, tol=mapped, niter=-1,  # type: ignore[arg-type]
                                       method="ortho")
    finally:
        lu.matmul = original
    return values, vectors, f"tol mapped to {mapped:.2g} (||H||_est {rms:.3g}, |lambda_k| {lam:.3g})"


def run_benchmark(k: int = 5, tol: float = 1e-6, seeds: tuple[int, ...] = (0, 1, 2), verbose: bool = True, *,
                  model: str = "mlp", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64,
                  peers: Sequence[str] | None = None, cap_s: float = math.inf, max_basis: int | None = None,
                  batch: int = 8, max_dense: int = MAX_DENSE) -> dict[str, Any]:
    """Run every peer on every seed; returns the rows, the reference and the setup."""
    from explorer.models import dense_hessian
    from explorer.operators import CallableOperator
    from explorer.operators.devices import device_label
    from explorer.solvers import SOLVERS, solve

    if "lanczos" not in SOLVERS:  # registered by explorer.solvers once its module is wired in
        import explorer.solvers.lanczos  # noqa: F401
    device = torch.device(device)
    torch.set_num_threads(1)  # PEERS.md: one thread for everyone on a shared 2-core host
    log = print if verbose else (lambda *a, **kw: None)
    wall_clock = device.type != "cpu"
    clock = time.perf_counter if wall_clock else time.process_time
    (H, model_text), t_build, _ = _timed(lambda: build_operator(model, dtype=dtype, device=device, batch=batch),
                                          device)
    n = H.shape[0]
    log(f"operator: {H.description} (n = {n:,}) on {device_label(str(device))}; {model_text}; built in "
        f"{t_build:.1f} s")

    spectrum: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    ref_text = f"none: n = {n:,} > {max_dense:,} (--max-dense); true residuals only"
    if n <= max_dense:
        (dense, t_dense, _) = _timed(lambda: dense_hessian(H.model, H.data, "cross_entropy", dtype=torch.float64,
                                                           max_parameters=max_dense))
        spectrum = torch.linalg.eigvalsh(dense)
        reference = spectrum.flip(0)[:k]
        gaps = (reference[:-1] - reference[1:]) / reference[:-1]
        ref_text = "dense_hessian (torch.autograd.functional.hessian) + eigvalsh (float64, CPU)"
        log(f"reference: dense Hessian (explorer.models.dense_hessian) in {t_dense:.1f} s; top-{k} = "
            + ", ".join(f"{v:.6g}" for v in reference.tolist())
            + f"; relative gaps {', '.join(f'{g:.3f}' for g in gaps)}")
    else:
        log(f"reference: {ref_text}")
    probe = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(99)).to(device=device,
                                                                                               dtype=dtype)
    H.matvec(probe)  # build the cached graph before timing
    reps = 10 if n > 10**6 else 50
    t_hvp = min(_timed(lambda: [H.matvec(probe) for _ in range(reps)], device)[1 if wall_clock else 2] / reps
                for _ in range(2))
    del probe
    log(f"one HVP: {t_hvp * 1e3:.2f} ms ({'wall' if wall_clock else 'CPU'})")

    try:
        import hessian_eigenthings as he
        version = getattr(he, "__version__", "1.0.0a5")
    except ImportError:
        he, version = None, None
    is_mlp = model.strip().lower() == "mlp"
    if peers is None:
        peers = [p for p in PEERS if (is_mlp or not p.startswith(("he_", "lanczos_none")))]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    if he is None and any(p.startswith("he_") for p in peers):
        log("hessian-eigenthings is not installed: `pip install --no-deps --pre hessian-eigenthings==1.0.0a5 tqdm`"
            " to add its rows")
        peers = [p for p in peers if not p.startswith("he_")]

    rows: list[PeerRun] = []

    def record(peer: str, seed: int, counter: CountingHVP, wall: float, cpu: float, values: torch.Tensor,
               vectors: torch.Tensor, claimed: torch.Tensor, note: str = "", attempts: list[int] | None = None) -> None:
        values = values.detach().cpu().double()
        if reference is not None and spectrum is not None:
            err, ghosts, missed = _match(values, spectrum, reference, claimed)
        else:
            err, ghosts, missed = math.nan, -1, -1
        res = _true_residuals(H, values, vectors.detach())
        seconds = wall if wall_clock else cpu
        row = PeerRun(LABELS[peer], seed, counter.count, wall, cpu, [float(x) for x in values], int(claimed.sum()),
                      err, float(res.max()) if res.numel() else math.nan, ghosts, missed, note, attempts or [],
                      overhead=seconds / max(counter.count * t_hvp, 1e-300))
        rows.append(row)
        log(f"  {row.peer:46s} seed {seed}: {row.hvps:5d} HVPs {wall:7.2f} s  err {err:.1e}  resid "
            f"{row.max_rel_residual:.1e}  overhead {row.overhead:.2f}  claimed {row.claimed_converged}/{k}"
            + (f"  ghosts {ghosts}  missed {missed}" if ghosts >= 0 else "") + (f"  ({note})" if note else ""))

    def capped(peer: str, seed: int, counter: CountingHVP, wall: float, cpu: float, why: str) -> None:
        row = PeerRun(LABELS[peer], seed, counter.count, wall, cpu, [], 0, math.nan, math.nan, 0, 0, why,
                      status=why.split("(")[0].split(":")[0] or "FAIL")
        rows.append(row)
        log(f"  {row.peer:46s} seed {seed}: {row.hvps:5d} HVPs {wall:7.2f} s  {why}")

    def attempt(peer: str, seed: int, fn: Callable[[CountingHVP], Any]) -> Any:
        counter = CountingHVP(H, cap_s, clock)
        counter.t0 = clock()
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            out, wall, cpu = _timed(lambda: fn(counter), device)
        except HVPCapReached as cap:
            capped(peer, seed, counter, time.perf_counter() - w0, time.process_time() - c0,
                   f"{cap} past the {cap_s:g} s cap")
            return None
        except Exception as err:  # noqa: BLE001 - a peer failing (or running out of memory) is a result
            text = str(err).splitlines()[0][:160] if str(err) else ""
            oom = "out of memory" in str(err).lower() or isinstance(err, MemoryError)
            capped(peer, seed, counter, time.perf_counter() - w0, time.process_time() - c0,
                   f"{'MEM' if oom else 'FAIL'}: {type(err).__name__}: {text}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return None
        return counter, out, wall, cpu

    lanczos_scale: float | None = None
    lanczos_extras: dict[str, Any] = {} if max_basis is None else {"max_basis": max_basis}
    for peer in peers:
        if peer.startswith("lanczos"):
            extra = {"lanczos": {}, "lanczos_b1": {"block_size": 1},
                     "lanczos_none": {"block_size": 1, "reorthogonalization": "none", "max_basis": 200}}[peer]
            extra = {**lanczos_extras, **extra}
            for seed in seeds:
                def run(counter: CountingHVP, extra: dict[str, Any] = extra, seed: int = seed) -> Any:
                    op = CallableOperator(counter, n, dtype=dtype, device=device, name="counted Hessian")
                    return solve("lanczos", op, k, which="LA", tol=tol, seed=seed, **extra)
                got = attempt(peer, seed, run)
                if got is None:
                    continue
                counter, result, wall, cpu = got
                if peer == "lanczos" and lanczos_scale is None and result.eigenvalues.numel() >= k:
                    lanczos_scale = float(result.eigenvalues.detach().abs().min())
                note = "" if result.status.ok else result.status.value
                record(peer, seed, counter, wall, cpu, result.eigenvalues, result.eigenvectors, result.converged, note)
                del result
        elif peer == "eigsh":
            if device.type != "cpu" and n > EIGSH_CUDA_MAX_N:
                log(f"  {LABELS[peer]:46s} skipped: n = {n:,} on {device} (ARPACK's work is on the CPU; above "
                    f"{EIGSH_CUDA_MAX_N:,} it would dominate)")
                continue
            import scipy.sparse.linalg as spla

            for seed in seeds:
                def run(counter: CountingHVP, seed: int = seed) -> Any:
                    def mv(x: np.ndarray) -> np.ndarray:
                        y = counter(torch.from_numpy(np.ascontiguousarray(x).reshape(-1)).to(device=device, dtype=dtype))
                        return y.detach().to("cpu", torch.float64).numpy()
                    lin = spla.LinearOperator((n, n), matvec=mv, dtype=np.float64)
                    v0 = np.random.default_rng(seed).standard_normal(n)
                    return spla.eigsh(lin, k=k, which="LA", tol=tol, v0=v0)
                got = attempt(peer, seed, run)
                if got is None:
                    continue
                counter, (vals, vecs), wall, cpu = got
                order = np.argsort(vals)[::-1]
                note = "" if device.type == "cpu" else "ARPACK on the CPU, HVPs on the device (host copies)"
                record(peer, seed, counter, wall, cpu, torch.from_numpy(vals[order].copy()),
                       torch.from_numpy(vecs[:, order].copy()), torch.ones(k, dtype=torch.bool), note)
        elif peer == "torch_lobpcg":
            scale = float(reference[-1]) if reference is not None else lanczos_scale
            for seed in seeds:
                got = attempt(peer, seed, lambda counter, seed=seed: _torch_lobpcg(counter, n, k, tol, seed, scale,
                                                                                   dtype, device))
                if got is None:
                    continue
                counter, (vals, vecs, note), wall, cpu = got
                if reference is None:
                    note += "; lambda_k from our lanczos row" if lanczos_scale else "; lambda_k unknown: ||H||_est"
                record(peer, seed, counter, wall, cpu, vals, vecs, torch.ones(k, dtype=torch.bool), note)
        elif peer in ("he_lanczos", "he_lanczos_default"):
            reorth = True if peer == "he_lanczos" else None
            for seed in seeds:
                attempts: list[int] = []

                def doubling(counter: CountingHVP, seed: int = seed, reorth: bool | None = reorth,
                             attempts: list[int] = attempts) -> Any:
                    op = he.LambdaOperator(counter, n, dtype=dtype)
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
                got = attempt(peer, seed, doubling)
                if got is None:
                    continue
                counter, res, wall, cpu = got
                note = "" if bool(res.converged.all()) else "not converged"
                record(peer, seed, counter, wall, cpu, res.eigenvalues, res.eigenvectors.T, res.converged, note,
                       attempts)
        elif peer == "he_lanczos_200":  # one long run: the default turns reorthogonalization off above 50 steps
            for seed in seeds:
                got = attempt(peer, seed, lambda counter, seed=seed: he.lanczos(
                    he.LambdaOperator(counter, n, dtype=dtype), k=k, max_iter=200, tol=tol, which="LA", seed=seed))
                if got is None:
                    continue
                counter, res, wall, cpu = got
                record(peer, seed, counter, wall, cpu, res.eigenvalues, res.eigenvectors.T, res.converged)
        elif peer == "he_power":
            for seed in seeds:
                got = attempt(peer, seed, lambda counter, seed=seed: he.deflated_power_iteration(
                    he.LambdaOperator(counter, n, dtype=dtype), k=k, tol=tol, max_iter=20_000, seed=seed))
                if got is None:
                    continue
                counter, res, wall, cpu = got
                note = "" if bool(res.converged.all()) else "not converged within max_iter=20000 per pair"
                record(peer, seed, counter, wall, cpu, res.eigenvalues, res.eigenvectors.T, res.converged, note)

    summary = _summarize(rows)
    return {"setup": {"operator": H.description, "model": model, "model_description": model_text, "n": n, "k": k,
                      "tol": tol, "seeds": list(seeds), "hvp_ms": t_hvp * 1e3, "torch": torch.__version__,
                      "hessian_eigenthings": version, "threads": 1, "device": device_label(str(device)),
                      "dtype": str(dtype).replace("torch.", ""), "clock": "wall" if wall_clock else "CPU",
                      "cap_s": cap_s},
            "reference": {"top": None if reference is None else reference.tolist(), "method": ref_text},
            "summary": summary, "runs": [asdict(r) for r in rows]}


def _summarize(rows: list[PeerRun]) -> list[dict[str, Any]]:
    peers: dict[str, list[PeerRun]] = {}
    for row in rows:
        peers.setdefault(row.peer, []).append(row)
    out = []
    for peer, runs in peers.items():
        done = [r for r in runs if r.status == "done"]
        if not done:
            out.append({"peer": peer, "status": runs[0].status, "note": runs[0].note,
                        "hvps_median": statistics.median(r.hvps for r in runs),
                        "hvps_range": f"{min(r.hvps for r in runs)}-{max(r.hvps for r in runs)}",
                        "wall_s_median": math.nan, "cpu_s_median": math.nan, "overhead_median": math.nan,
                        "max_rel_error": math.nan, "max_rel_residual": math.nan, "ghosts_claimed_converged": -1,
                        "missed": -1, "all_claimed_converged": False})
            continue
        out.append({
            "peer": peer,
            "status": "done" if len(done) == len(runs) else
            f"{len(runs) - len(done)} of {len(runs)} runs {next(r.status for r in runs if r.status != 'done')}",
            "note": next((r.note for r in runs if r.status != "done"), ""),
            "hvps_median": statistics.median(r.hvps for r in done),
            "hvps_range": f"{min(r.hvps for r in done)}-{max(r.hvps for r in done)}",
            "wall_s_median": statistics.median(r.wall_s for r in done),
            "cpu_s_median": statistics.median(r.cpu_s for r in done),
            "overhead_median": statistics.median(r.overhead for r in done),
            "max_rel_error": max(r.max_rel_error for r in done),
            "max_rel_residual": max(r.max_rel_residual for r in done),
            "ghosts_claimed_converged": sum(r.ghosts for r in done) if all(r.ghosts >= 0 for r in done) else -1,
            "missed": sum(r.missed for r in done) if all(r.missed >= 0 for r in done) else -1,
            "all_claimed_converged": all(r.claimed_converged == len(r.eigenvalues) for r in done),
        })
    return out


def format_table(report: dict[str, Any]) -> str:
    setup = report["setup"]
    dense = report["reference"]["top"] is not None
    lines = [
        f"Top-{setup['k']} Hessian eigenvalues, {setup['operator']}; {setup.get('model_description', '')}; on "
        f"{setup.get('device', 'cpu')}; tol {setup['tol']:g} (relative residual); seeds {setup['seeds']}; "
        f"one HVP = {setup['hvp_ms']:.2f} ms; 1 thread; dense reference: {report['reference']['method']}",
        "",
        "| peer | HVPs (median, range) | wall s | CPU s | overhead | max rel. eig. error vs dense | max rel. residual | "
        "ghosts claimed converged | missed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def num(value: float, spec: str) -> str:
        return "-" if not math.isfinite(value) else format(value, spec)

    for s in report["summary"]:
        ghosts = "-" if s["ghosts_claimed_converged"] < 0 or not dense else str(s["ghosts_claimed_converged"])
        missed = "-" if s["missed"] < 0 or not dense else str(s["missed"])
        peer = s["peer"] + ("" if s.get("status", "done") == "done" else f" ({s['status']}: {s.get('note', '')})")
        lines.append(f"| {peer} | {s['hvps_median']:g} ({s['hvps_range']}) | {num(s['wall_s_median'], '.3f')} | "
                     f"{num(s['cpu_s_median'], '.3f')} | {num(s.get('overhead_median', math.nan), '.2f')} | "
                     f"{num(s['max_rel_error'], '.1e')} | {num(s['max_rel_residual'], '.1e')} | {ghosts} | {missed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from explorer.bench.models import parse_model_spec
    from explorer.operators.devices import parse_device, parse_dtype

    parser = argparse.ArgumentParser(prog="python -m explorer.bench.hessian", description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--seeds", type=int, default=3, help="number of random starts (0, 1, ...)")
    parser.add_argument("--model", default="mlp",
                        help="'mlp' (the sample MLP, default) or 'transformer:SIZE' (a GPT-like decoder generated in "
                             "memory with about SIZE parameters, e.g. transformer:100M)")
    parser.add_argument("--batch", type=int, default=8, help="sequences in the generated transformer's data (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--peers", nargs="+", choices=PEERS, help="rows to run (default: all that apply)")
    parser.add_argument("--cap", type=float, default=math.inf,
                        help="seconds per run (CPU seconds on the CPU, wall seconds on CUDA; default none)")
    parser.add_argument("--max-basis", type=int, default=None, help="basis size of the lanczos rows (memory)")
    parser.add_argument("--max-dense", type=int, default=MAX_DENSE,
                        help=f"largest n with a dense reference (default {MAX_DENSE})")
    parser.add_argument("--json", type=str, default=None, help="write the full report here")
    args = parser.parse_args(argv)
    try:
        parse_model_spec(args.model)
        device = parse_device(args.device)
    except ValueError as err:
        parser.error(str(err).replace("`device`", "--device"))
    if args.k < 1 or args.seeds < 1:
        parser.error("--k and --seeds must be >= 1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    report = run_benchmark(k=args.k, tol=args.tol, seeds=tuple(range(args.seeds)), model=args.model, device=device,
                           dtype=parse_dtype(args.dtype), peers=args.peers, cap_s=args.cap, max_basis=args.max_basis,
                           batch=args.batch, max_dense=args.max_dense)
    print()
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
