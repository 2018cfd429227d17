"""The process group a distributed solve runs in: setup from torchrun's environment, a
heartbeat, collectives that fail with a message, and the agreement check.

``init_from_env`` reads the variables ``torchrun`` sets for every worker (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) and
starts a ``torch.distributed`` process group on them: gloo on CPUs, NCCL on GPUs (one
GPU per rank). Any launcher that sets the same variables works (``launch.launch_local``
does, for the tests).

What happens when something goes wrong:

* **A rank dies or hangs.** Every collective goes through :meth:`DistContext.collective`,
  which turns the backend's error (gloo: "Connection closed by peer" at once for a killed
  peer; "Timed out waiting" after ``timeout`` for a hung one) into a
  :class:`RankFailureError` that says which rank stopped. It knows which from a heartbeat:
  each rank increments a counter in the rendezvous ``TCPStore`` every ``heartbeat_s``
  seconds from a daemon thread, and a rank whose counter no longer moves is dead or stuck.
  A rank that fails with a Python error first writes its reason to the store, so the
  others can name it ("rank 1 failed: ValueError ..."). This is the
  ``monitored_barrier`` idea (gloo's barrier that names the missing rank) without its
  limits: ``monitored_barrier`` is gloo-only and needs a healthy group, while the store
  still answers after the group broke.
* **Ranks disagree on the problem.** :meth:`DistContext.agree` gathers a fingerprint of the
  problem and the solve from every rank (``all_gather_object``) and raises
  :class:`ProblemMismatchError` on every rank, naming the fields that differ, before any
  solve starts.
* **NCCL without GPUs.** :func:`init_from_env` refuses with the fix (``--backend gloo``).

Only rank 0 (``is_root``) records and writes results; the others compute the same
solve (see ``operators.py``).
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DistributedError",
    "DistributedSetupError",
    "RankFailureError",
    "ProblemMismatchError",
    "RanksDivergedError",
    "DistContext",
    "init_from_env",
    "launched_by_torchrun",
    "DEFAULT_TIMEOUT_S",
    "BACKENDS",
]

#: How long a rank waits for the others in one collective before it gives up (seconds).
#: Two minutes: long enough for the slowest rank's share of one Hessian-vector product of
#: a large model, short enough that a hung peer does not hold a run for torch's default
#: 30 minutes. ``--timeout`` sets it.
DEFAULT_TIMEOUT_S = 120.0
#: The heartbeat period (seconds). A failure diagnosis waits 2.5 periods to see which
#: counters stopped.
DEFAULT_HEARTBEAT_S = 1.0
BACKENDS = ("auto", "gloo", "nccl")
_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_PREFIX = "explorer/"

T = TypeVar("T")


class DistributedError(RuntimeError):
    """A distributed run could not start or did not finish; the message says why."""


class DistributedSetupError(DistributedError):
    """The process group could not be set up (environment, backend, devices)."""


class RankFailureError(DistributedError):
    """Another rank died, hung past the timeout, or failed with an error."""


class ProblemMismatchError(DistributedError):
    """The ranks were given different problems or solver settings."""


class RanksDivergedError(DistributedError):
    """The ranks' solvers reached different vectors: they no longer run the same solve."""


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the variables a launcher sets for each worker are present."""
    env = os.environ if environ is None else environ
    return all(name in env for name in _ENV)


def _int_env(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        if default is None:
            raise DistributedSetupError(f"the environment variable {name} is not set")
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedSetupError(f"the environment variable {name} must be an integer, got {raw!r}") from None


def _choose_backend(backend: str, local_world_size: int) -> str:
    backend = str(backend).lower()
    if backend not in BACKENDS:
        raise DistributedSetupError(f"`backend` must be one of {list(BACKENDS)}, got {backend!r}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if backend == "auto":
        return "nccl" if dist.is_nccl_available() and gpus >= local_world_size else "gloo"
    if backend == "nccl":
        if not dist.is_nccl_available():
            raise DistributedSetupError(
                "NCCL was asked for, but this torch build has no NCCL (a CPU-only build, torch "
                f"{torch.__version__}). Use `--backend gloo` (CPUs), or install a CUDA build of torch on a machine "
                "with GPUs.")
        if gpus == 0:
            raise DistributedSetupError(
                "NCCL was asked for, but no CUDA GPU is visible (torch.cuda.is_available() is False"
                + (f", CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}"
                   if "CUDA_VISIBLE_DEVICES" in os.environ else "")
                + "). NCCL only runs on GPUs: use `--backend gloo` on CPUs.")
        if gpus < local_world_size:
            raise DistributedSetupError(
                f"NCCL needs one GPU per rank, but this node runs {local_world_size} ranks and sees {gpus} GPU(s). "
                f"Start at most {gpus} processes per node (`torchrun --nproc-per-node {gpus}`), or use "
                "`--backend gloo`.")
    if backend == "gloo" and not dist.is_gloo_available():  # pragma: no cover - every torch build has gloo
        raise DistributedSetupError("this torch build has no gloo backend; use a standard torch build")
    return backend


@dataclass
class SyncState:
    """What rank 0 tells the others through the operator's collectives (no extra messages).

    ``stop_requested`` is set on rank 0 when its tracker raises ``StopSolve``; the flag
    rides in the next product's collective, after which every rank has ``stop_seen`` and
    all of them stop at the same iteration (see ``operators.RootTracker``).
    """

    stop_requested: bool = False
    stop_reason: str = ""
    stop_seen: bool = False


@dataclass
class CommStats:
    """Collectives this rank took part in: how many, the bytes of its output buffers, the time."""

    calls: int = 0
    bytes: int = 0
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "bytes": self.bytes, "seconds": self.seconds, "by_kind": dict(self.by_kind)}


class _Heartbeat:
    """A daemon thread that increments ``hb/<rank>`` in the store every ``period`` seconds."""

    def __init__(self, store: Any, rank: int, period: float) -> None:
        self.store, self.rank, self.period = store, rank, period
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"explorer-heartbeat-{rank}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                self.store.add(f"hb/{self.rank}", 1)
            except Exception:  # noqa: BLE001 - the store host is gone; the collectives will say so
                return
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=2 * self.period + 1)


class DistContext:
    """One rank's view of the process group.

    Attributes:
        rank, world_size, local_rank: as torchrun numbers them.
        backend: "gloo" or "nccl"; "none" for the one-process context (:meth:`local`).
        device: where this rank's tensors live (``cuda:<local_rank>`` with NCCL, else cpu).
        timeout_s: how long a collective waits for the other ranks.
        comm: the collectives this rank ran (:class:`CommStats`).
        sync: the stop flag shared with the operators (:class:`SyncState`).
    """

    def __init__(self, *, rank: int, world_size: int, local_rank: int, backend: str, device: torch.device,
                 timeout_s: float, store: Any = None, heartbeat_store: Any = None,
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S, owns_group: bool = False) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend, self.device, self.timeout_s = backend, device, float(timeout_s)
        self.store = store
        self.heartbeat_s = float(heartbeat_s)
        self.comm = CommStats()
        self.sync = SyncState()
        self._owns_group = owns_group
        self._heartbeat: _Heartbeat | None = None
        self._closed = False
        if store is not None and heartbeat_s > 0:  # its own connection: the main thread may be waiting on one
            self._heartbeat = _Heartbeat(heartbeat_store if heartbeat_store is not None else store, rank,
                                         self.heartbeat_s)

    @classmethod
    def local(cls, device: torch.device | str = "cpu") -> "DistContext":
        """A one-process context with no process group: collectives are the identity."""
        return cls(rank=0, world_size=1, local_rank=0, backend="none", device=torch.device(device),
                   timeout_s=DEFAULT_TIMEOUT_S, heartbeat_s=0)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend != "none"

    def __repr__(self) -> str:
        return (f"DistContext(rank={self.rank}, world_size={self.world_size}, backend={self.backend!r}, "
                f"device={self.device})")

    # -- collectives ---------------------------------------------------------
    def collective(self, kind: str, fn: Callable[[], T], *, nbytes: int = 0, where: str = "") -> T:
        """Run one collective; a backend failure becomes a :class:`RankFailureError` that names
        the rank that stopped (from the heartbeats) and what this rank was doing (``where``)."""
        start = time.perf_counter()
        try:
            out = fn()
        except (RuntimeError, ValueError) as error:  # DistBackendError / DistError derive from RuntimeError
            if isinstance(error, DistributedError):
                raise
            raise self._failure(kind, where, error) from None
        self.comm.calls += 1
        self.comm.bytes += int(nbytes)
        self.comm.seconds += time.perf_counter() - start
        self.comm.by_kind[kind] = self.comm.by_kind.get(kind, 0) + 1
        return out

    def all_reduce(self, tensor: torch.Tensor, *, op: str = "sum", where: str = "") -> torch.Tensor:
        """In-place all-reduce (``sum`` or ``max``) of ``tensor``; returns it."""
        if self.distributed:
            reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
            self.collective("all_reduce", lambda: dist.all_reduce(tensor, op=reduce_op),
                            nbytes=tensor.numel() * tensor.element_size(), where=where)
        return tensor

    def all_gather_into(self, out: torch.Tensor, piece: torch.Tensor, *, where: str = "") -> torch.Tensor:
        """``out`` (world_size * piece.shape[0], ...) = every rank's ``piece`` stacked by rank."""
        if not self.distributed:
            out.copy_(piece)
            return out
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # name since torch 2.13
        self.collective("all_gather", lambda: gather(out, piece), nbytes=out.numel() * out.element_size(),
                        where=where)
        return out

    def gather(self, piece: torch.Tensor, *, dst: int = 0, where: str = "") -> list[torch.Tensor] | None:
        """Every rank's ``piece`` (all the same shape), in rank order, on rank ``dst``; None elsewhere."""
        if not self.distributed:
            return [piece]
        out = [torch.empty_like(piece) for _ in range(self.world_size)] if self.rank == dst else None
        self.collective("gather", lambda: dist.gather(piece, out, dst=dst),
                        nbytes=piece.numel() * piece.element_size() * (self.world_size if out else 1), where=where)
        return out

    def all_gather_object(self, obj: Any, *, where: str = "") -> list[Any]:
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        self.collective("all_gather_object", lambda: dist.all_gather_object(gathered, obj), where=where)
        return gathered

    def barrier(self, *, where: str = "") -> None:
        if self.distributed:
            if self.backend == "nccl":
                self.collective("barrier", lambda: dist.barrier(device_ids=[self.device.index]), where=where)
            else:
                self.collective("barrier", dist.barrier, where=where)

    # -- agreement -------------------------------------------------------------
    def agree(self, fingerprint: Mapping[str, Any], *, what: str = "problem") -> None:
        """Raise :class:`ProblemMismatchError` on every rank unless all ranks hold the same
        ``fingerprint`` (a flat dict of names to plain values)."""
        mine = {str(k): v for k, v in fingerprint.items()}
        gathered = self.all_gather_object(mine, where=f"checking that all ranks have the same {what}")
        reference = gathered[0]
        problems = []
        for rank, other in enumerate(gathered[1:], start=1):
            keys = sorted(set(reference) | set(other))
            for key in keys:
                if reference.get(key) != other.get(key):
                    problems.append(f"{key}: rank 0 has {_short(reference.get(key))}, rank {rank} has "
                                    f"{_short(other.get(key))}")
        if problems:
            shown = "; ".join(problems[:8]) + (f"; ... ({len(problems) - 8} more)" if len(problems) > 8 else "")
            raise ProblemMismatchError(
                f"the {self.world_size} ranks were not given the same {what} ({shown}). Every rank must run the "
                "same command on the same files: check the command line and that the files are identical on "
                "every node.")

    # -- failures --------------------------------------------------------------
    def report_failure(self, error: BaseException) -> None:
        """Tell the other ranks (through the store) why this rank is about to exit."""
        if self.store is None or isinstance(error, RankFailureError):
            return
        try:
            text = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:400]
            self.store.set(f"failed/{self.rank}", text)
        except Exception:  # noqa: BLE001 - the store may be gone too
            pass

    def _failure(self, kind: str, where: str, error: BaseException) -> RankFailureError:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        if self.store is not None:  # so that the others do not count this rank among the dead when it exits
            try:
                self.store.set(f"ended/{self.rank}", "saw another rank fail")
            except Exception:  # noqa: BLE001 - the store may be gone
                pass
        doing = f"{kind}" + (f" ({where})" if where else "")
        suspects = self._diagnose()
        return RankFailureError(
            f"rank {self.rank} of {self.world_size}: the {doing} did not complete. {suspects} "
            f"This rank stops here instead of waiting (timeout {self.timeout_s:g} s). Backend said: {detail}")

    def _diagnose(self) -> str:
        """Which ranks failed (reasons in the store) or stopped beating (dead or hung)."""
        if self.store is None:
            return "Another rank stopped (no store to tell which)."
        others = [r for r in range(self.world_size) if r != self.rank]
        try:
            self.store.set_timeout(datetime.timedelta(seconds=max(2.0, 3 * self.heartbeat_s)))
            reasons = {}
            for r in others:
                if self.store.check([f"failed/{r}"]):
                    reasons[r] = self.store.get(f"failed/{r}").decode("utf-8", "replace")
            if reasons:
                return " ".join(f"Rank {r} failed: {text}." for r, text in reasons.items())
            before = {r: self.store.add(f"hb/{r}", 0) for r in others}
            time.sleep(2.5 * self.heartbeat_s)
            after = {r: self.store.add(f"hb/{r}", 0) for r in others}
        except DistributedError:  # the SIGTERM handler of the command line, while this rank was looking
            return ("torchrun is stopping every rank because one of them exited; its log names the first "
                    "failure.")
        except Exception:  # noqa: BLE001 - the store went with its host
            host = "rank 0 (which hosts the rendezvous store)" if self.rank != 0 else "the rendezvous store"
            return (f"The store cannot be reached either, so {host} is gone or the network failed; "
                    "torchrun's log shows which process exited and why.")
        try:
            ended = {r for r in others if self.store.check([f"ended/{r}"])}
        except Exception:  # noqa: BLE001 - the store went with its host after the reads above
            ended = set()
        stopped = [r for r in others if after[r] == before[r] and r not in ended]
        if stopped:
            names = ", ".join(str(r) for r in stopped)
            return (f"Rank{'s' if len(stopped) > 1 else ''} {names} stopped responding (no heartbeat for "
                    f"{2.5 * self.heartbeat_s:g} s: killed, out of memory, or hung); torchrun's log shows its "
                    "exit code.")
        return ("Every other rank is still alive (heartbeats move), so one is stuck or too slow: it did not reach "
                "this collective within the timeout. Raise `--timeout` if one rank's share of a product takes "
                "longer.")

    # -- teardown --------------------------------------------------------------
    def close(self) -> None:
        """Stop the heartbeat and, if this context started it, destroy the process group."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._owns_group and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - a broken group may not tear down cleanly; the process ends anyway
                pass

    def __enter__(self) -> "DistContext":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self.report_failure(exc)
        self.close()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def init_from_env(backend: str = "auto", *, timeout: float = DEFAULT_TIMEOUT_S,
                  heartbeat_s: float = DEFAULT_HEARTBEAT_S, environ: Mapping[str, str] | None = None) -> DistContext:
    """Start (or join) the process group described by torchrun's environment variables.

    Args:
        backend: "gloo" (CPUs), "nccl" (GPUs, one per rank) or "auto" (NCCL when every local
            rank has a GPU, else gloo).
        timeout: seconds a collective waits for the other ranks (the process group's timeout).
        heartbeat_s: heartbeat period; 0 turns the heartbeat off.
        environ: the variables (default ``os.environ``).

    Raises:
        DistributedSetupError: not launched by torchrun (variables missing), NCCL without
            GPUs, or the other ranks did not join within ``timeout``.
    """
    env = os.environ if environ is None else environ
    missing = [name for name in _ENV if name not in env]
    if missing:
        raise DistributedSetupError(
            f"not started by torchrun: {', '.join(missing)} not set. Launch with "
            "`torchrun --nproc-per-node N -m explorer solve SOURCE --distributed ...` (or set RANK, WORLD_SIZE, MASTER_ADDR and "
            "MASTER_PORT for every process).")
    rank = _int_env(env, "RANK")
    world_size = _int_env(env, "WORLD_SIZE")
    local_rank = _int_env(env, "LOCAL_RANK", rank)
    local_world_size = _int_env(env, "LOCAL_WORLD_SIZE", world_size)
    if not 0 <= rank < world_size:
        raise DistributedSetupError(f"RANK={rank} must be between 0 and WORLD_SIZE - 1 = {world_size - 1}")
    if not timeout > 0:
        raise DistributedSetupError(f"`timeout` must be positive seconds, got {timeout!r}")
    chosen = _choose_backend(backend, local_world_size)
    device = torch.device("cuda", local_rank) if chosen == "nccl" else torch.device("cpu")
    if chosen == "nccl":
        torch.cuda.set_device(device)
    delta = datetime.timedelta(seconds=float(timeout))
    if dist.is_initialized():  # the caller set up the group: use it as it is
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                           backend=dist.get_backend(), device=device, timeout_s=timeout, heartbeat_s=0)
    host, port = env["MASTER_ADDR"], _int_env(env, "MASTER_PORT")
    # torchrun's agent already serves the store on MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE);
    # without it rank 0 hosts it, as torch's env:// rendezvous does.
    agent_store = env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    try:
        store = dist.TCPStore(host, port, world_size, is_master=(rank == 0 and not agent_store), timeout=delta,
                              wait_for_workers=False)
        group_store = dist.PrefixStore(_PREFIX + "pg/", store)
        dist.init_process_group(chosen, store=group_store, rank=rank, world_size=world_size, timeout=delta,
                                **({"device_id": device} if chosen == "nccl" else {}))
        beat_store = dist.TCPStore(host, port, world_size, is_master=False, timeout=delta, wait_for_workers=False)
    except (RuntimeError, ValueError) as error:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise DistributedSetupError(
            f"rank {rank} of {world_size} could not join the process group at {host}:{port} within {timeout:g} s "
            f"({detail}). Check that all {world_size} processes were started with the same MASTER_ADDR and "
            "MASTER_PORT, and that rank 0 is reachable.") from None
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=chosen, device=device,
                       timeout_s=timeout, store=dist.PrefixStore(_PREFIX + "run/", store),
                       heartbeat_store=dist.PrefixStore(_PREFIX + "run/", beat_store), heartbeat_s=heartbeat_s,
                       owns_group=True)
