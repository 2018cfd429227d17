"""Data-parallel loss Hessians and Gauss-Newton matrices.

The model and the vector are replicated; the data set is split across ranks
(``sharding.shard_indices``: rank r takes samples r, r + p, ...). Each rank builds the
single-process :class:`~explorer.models.hessian.HessianOperator` (or
:class:`~explorer.models.hessian.GGNOperator`) over its shard, and
:class:`~explorer.distributed.operators.DataParallelOperator` sums the products weighted
by the shard sizes: the loss is the mean over all N samples,

    L = sum_r (n_r / N) L_r,   H v = sum_r (n_r / N) H_r v,

where L_r, H_r are the mean loss and Hessian over shard r (what the shard's operator
computes, itself exact over its chunks), so the sum is the full-data Hessian, not an
approximation. A mini-batch (``minibatch``) is drawn from the whole data set with the
same seed on every rank, exactly as the single-process operator draws it, and then split.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from explorer.distributed.context import DistContext
from explorer.distributed.operators import DataParallelOperator
from explorer.distributed.sharding import shard_indices
from explorer.models.hessian import LOSSES, GGNOperator, HessianOperator, as_model
from explorer.models.loading import Dataset, ModelInputError

__all__ = ["data_parallel_curvature", "CURVATURES", "tensor_digest"]

CURVATURES = {"hessian": HessianOperator, "ggn": GGNOperator}


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' bytes, shapes and dtypes (what ranks compare to agree)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def data_parallel_curvature(model: Any, data: Dataset | tuple[torch.Tensor, torch.Tensor], context: DistContext, *,
                            curvature: str = "hessian", loss: str = "cross_entropy", params: Any = None,
                            batch_size: int | None = None, minibatch: int | None = None, seed: int = 0,
                            dtype: torch.dtype = torch.float32, hvp: str = "double_backward",
                            check: bool = True) -> DataParallelOperator:
    """The Hessian (or Gauss-Newton matrix) of the mean loss over all of ``data``, split across ranks.

    Every rank passes the same ``model`` and ``data`` (each loads the files; only its
    shard is kept in the operator) and the same options.

    Args:
        model, loss, params, batch_size, dtype, hvp: as for ``HessianOperator``.
        data: the whole data set (a ``Dataset`` or (inputs, targets)).
        context: the process group.
        curvature: "hessian" or "ggn".
        minibatch, seed: a random subset of the whole set (drawn identically on every rank).
        check: compare a fingerprint of the model, the data and the options across ranks
            first (:meth:`DistContext.agree`).

    Raises:
        ProblemMismatchError: the ranks hold different models, data or options.
        ModelInputError: more ranks than samples, or anything the single-process operator refuses.
    """
    if curvature not in CURVATURES:
        raise ValueError(f"`curvature` must be one of {sorted(CURVATURES)}, got {curvature!r}")
    if isinstance(data, tuple):
        data = Dataset(torch.as_tensor(data[0]), torch.as_tensor(data[1]), "data")
    wrapped = as_model(model)
    n_total = len(data)
    if minibatch is not None:
        minibatch = int(minibatch)
        if not 1 <= minibatch <= n_total:
            raise ModelInputError(f"`minibatch` must be between 1 and the {n_total} samples, got {minibatch}")
    if check:
        context.agree({
            "curvature": curvature, "loss": loss, "params": repr(params), "batch_size": batch_size,
            "minibatch": minibatch, "seed": seed, "dtype": str(dtype), "hvp": hvp,
            "model": wrapped.name, "model_parameters": tensor_digest(*[p for p in wrapped.module.parameters()]),
            "data": data.name, "data_samples": n_total, "data_digest": tensor_digest(data.inputs, data.targets),
        }, what="model, data and Hessian options")
    if minibatch is not None and minibatch < n_total:  # the draw HessianOperator makes, on the whole set
        generator = torch.Generator().manual_seed(int(seed))
        used = torch.randperm(n_total, generator=generator)[:minibatch].sort().values
    else:
        used = torch.arange(n_total)
    if len(used) < context.world_size:
        raise ModelInputError(f"{len(used)} samples cannot be split over {context.world_size} ranks (each needs at "
                              f"least one); run with at most {len(used)} processes")
    mine = used[shard_indices(len(used), context.rank, context.world_size)]
    shard = Dataset(data.inputs[mine], data.targets[mine], f"{data.name} [shard {context.rank + 1} of "
                    f"{context.world_size}]")
    local = CURVATURES[curvature](wrapped, shard, loss, params, batch_size=batch_size, dtype=dtype,
                                  device=context.device, hvp=hvp)
    weight = len(shard) / len(used)
    sampling = (f"full data set ({n_total} samples, exact)" if len(used) == n_total else
                f"mini-batch of {len(used)} of {n_total} samples (stochastic, seed {seed})")
    description = (f"{local.curvature} of the {LOSSES[local.loss]} loss of {wrapped.name}; "
                   f"{local.parameter_summary}; {sampling}; data-parallel over {context.world_size} ranks "
                   f"({len(shard)} samples on rank {context.rank}); {str(dtype).replace('torch.', '')}")
    return DataParallelOperator(local, weight, context, description=description)
