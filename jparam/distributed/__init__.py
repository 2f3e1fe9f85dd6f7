"""Scale-out on ``jax.sharding`` with torch's names: ``init_device_mesh`` (DeviceMesh),
``replicate`` (DDP), ``fully_shard`` (FSDP), ``parallelize_module`` (tensor parallel
plans), ``shard_batch`` (DistributedSampler-style batches), ``jax.eval_shape`` +
``materialize`` / ``to_empty`` (meta-device init), and ``shardings`` / ``partition_specs``
for ``jax.jit``.  See ``docs/sharding.md``.

Example:
    >>> mesh = jparam.distributed.init_device_mesh("cpu", (1,), mesh_dim_names=("data",))
    >>> model = jparam.distributed.replicate(nn.Linear(4, 2), mesh)
    >>> x = jparam.distributed.shard_batch(np.ones((8, 4), np.float32), mesh, "data")
    >>> model(x).sharding.spec
    P('data',)
"""
from jparam.distributed._abstract import materialize, to_empty
from jparam.distributed._batch import shard_batch
from jparam.distributed._checkpoint import load_checkpoint, save_checkpoint
from jparam.distributed._mesh import init_device_mesh
from jparam.distributed._placement import partition_specs, shardings
from jparam.distributed._plans import (ColwiseParallel, ParallelStyle, RowwiseParallel, fully_shard,
                                       parallelize_module, replicate)

__all__ = ["init_device_mesh", "replicate", "fully_shard", "parallelize_module", "ColwiseParallel",
           "RowwiseParallel", "ParallelStyle", "shard_batch", "shardings", "partition_specs",
           "materialize", "to_empty", "save_checkpoint", "load_checkpoint"]
