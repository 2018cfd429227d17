"""Past one process: distributed Hessians and sharded matrices on ``torch.distributed``.

Launched by ``torchrun`` (gloo on CPUs, NCCL on GPUs):

    torchrun --nproc-per-node 2 -m explorer solve laplacian_2d:300 --solver lanczos -k 10 --distributed --json
    torchrun --nproc-per-node 4 -m explorer hessian model.pt2 --data data.safetensors -k 5 --distributed

(the command line is ``explorer/cli/distributed.py``; rank 0 writes the run to the run store).

* ``context``: ``init_from_env`` (the process group from torchrun's variables), ``DistContext``
  (collectives that fail with a message naming the dead rank, a heartbeat, the agreement check).
* ``operators``: ``RowShardedOperator`` (rows of a sparse matrix per rank, all-gather),
  ``DataParallelOperator`` (per-rank products summed by all-reduce), ``RootTracker``.
* ``hessian``: ``data_parallel_curvature`` (the Hessian / Gauss-Newton matrix over data
  split across ranks, equal to the single-process one over all of it).
* ``sharding``: row ranges, sample shards, reading one rank's rows of an .mtx / .npz file.
* ``solve``: ``solve_distributed`` and ``hessian_distributed``, the functions the command
  line calls; ``launch``: ``launch_local`` starts N local ranks (the tests, the benchmark);
  ``hessian.data_parallel_curvature`` is imported from its module (it loads ``explorer.models``).

Vectors are replicated (every registry solver runs unchanged, each rank running the same
solve) or, for Lanczos on a row-sharded matrix, sharded (``space.ShardedSpace``: each rank
keeps its rows of every vector and the solver's inner products are all-reduced, so memory per
rank falls with the ranks); only rank 0 records. ARCHITECTURE.md ("Past one process") says what
each costs at scale.
"""

from explorer.distributed.context import (
    BACKENDS,
    DEFAULT_TIMEOUT_S,
    DistContext,
    DistributedError,
    DistributedSetupError,
    ProblemMismatchError,
    RankFailureError,
    RanksDivergedError,
    init_from_env,
    launched_by_torchrun,
)
from explorer.distributed.operators import DataParallelOperator, RootTracker, RowShardedOperator
from explorer.distributed.sharding import read_row_block, row_ranges, shard_indices
from explorer.distributed.solve import (
    DistributedOutcome,
    SourceSpec,
    hessian_distributed,
    memory_now,
    parse_source,
    row_sharded_operator,
    solve_distributed,
)

__all__ = [
    "BACKENDS", "DEFAULT_TIMEOUT_S", "DistContext", "DistributedError", "DistributedSetupError",
    "ProblemMismatchError", "RankFailureError", "RanksDivergedError", "init_from_env", "launched_by_torchrun",
    "DataParallelOperator", "RootTracker", "RowShardedOperator", "read_row_block", "row_ranges", "shard_indices",
    "DistributedOutcome", "SourceSpec", "hessian_distributed", "memory_now", "parse_source", "row_sharded_operator",
    "solve_distributed",
]
