"""Device mesh, sharding rules and multi-host start.

The mesh has two axes: `data` (pure data parallelism: every device holds all parameters) and
`fsdp` (the batch is split over it too, and parameters and optimizer state are sharded along
their `embed` dimension, ZeRO-3 style). The model names every parameter dimension with a logical
axis (vocab, embed, heads, kv_heads, head_dim, mlp, layers); LOGICAL_AXIS_RULES maps those names
onto mesh axes, so changing the layout is a change of rules, not of model code.
"""

from __future__ import annotations

import logging
import os

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling.configuration import ConfigError

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")

# logical parameter axis -> mesh axis (None: replicated along that dimension)
LOGICAL_AXIS_RULES = (
    ("embed", "fsdp"),
    ("vocab", None),
    ("heads", None),
    ("kv_heads", None),
    ("head_dim", None),
    ("mlp", None),
    ("layers", None),
)


def initialize_distributed() -> None:
    """Join a multi-host job, once per process, before any other JAX call touches devices.

    On TPU pods `jax.distributed.initialize()` finds its peers itself. On GPU clusters set
    JAX_COORDINATOR_ADDRESS (host:port), JAX_NUM_PROCESSES and JAX_PROCESS_ID (SLURM and
    Open MPI environments are also detected by JAX). A single process with none of these set
    runs alone.
    """
    if jax.distributed.is_initialized():
        return
    explicit = os.environ.get("JAX_COORDINATOR_ADDRESS")
    on_tpu_pod = bool(os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))
    if explicit:
        jax.distributed.initialize(coordinator_address=explicit,
                                   num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["JAX_PROCESS_ID"]))
    elif on_tpu_pod or os.environ.get("SLURM_NTASKS", "1") != "1" or os.environ.get("OMPI_COMM_WORLD_SIZE", "1") != "1":
        jax.distributed.initialize()
    else:
        return
    logging.info("joined distributed job: process %d of %d, %d devices",
                 jax.process_index(), jax.process_count(), jax.device_count())


def make_mesh(data: int = -1, fsdp: int = 1) -> Mesh:
    """A (data, fsdp) mesh over all devices; -1 for one axis means 'all remaining devices'."""
    n = jax.device_count()
    if data == -1 and fsdp == -1:
        raise ConfigError("train.mesh_data and train.mesh_fsdp cannot both be -1")
    if data == -1:
        data = n // fsdp if fsdp > 0 and n % fsdp == 0 else 0
    if fsdp == -1:
        fsdp = n // data if data > 0 and n % data == 0 else 0
    if data <= 0 or fsdp <= 0 or data * fsdp != n:
        raise ConfigError(f"train.mesh_data x train.mesh_fsdp must equal the {n} available devices, "
                          f"got data={data}, fsdp={fsdp}")
    devices = np.asarray(jax.devices()).reshape(data, fsdp)
    return Mesh(devices, MESH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch dimension split over every device (data and fsdp), sequence dimension whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shardings_for(boxed_tree, mesh: Mesh):
    """NamedShardings for a pytree whose leaves may be flax-boxed with logical axis names.

    Unboxed leaves (step counters, scalars) are replicated. The result has the structure of
    `nn.unbox(boxed_tree)`.
    """
    specs = nn.get_partition_spec(boxed_tree)
    mesh_specs = nn.logical_to_mesh(specs, LOGICAL_AXIS_RULES)

    def to_sharding(spec):
        return NamedSharding(mesh, spec if isinstance(spec, PartitionSpec) else PartitionSpec())

    return jax.tree.map(to_sharding, mesh_specs, is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble this host's slice of the batch into global arrays sharded over the mesh."""
    sharding = batch_sharding(mesh)
    return {key: jax.make_array_from_process_local_data(sharding, value) for key, value in local_batch.items()}
