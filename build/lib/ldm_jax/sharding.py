"""One device mesh with named axes ('sweep', 'data'): stacked sweep members on 'sweep', batches on 'data'."""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SWEEP, DATA = "sweep", "data"


def mesh_shape(num_members: int, batch_size: int, num_devices: int, sweep: int = -1, data: int = -1):
  """(sweep, data) axis sizes: explicit where given, else as many devices on the sweep axis as divide it."""
  if sweep == -1 and data == -1:
    sweep = math.gcd(num_members, num_devices)
    data = num_devices // sweep
  elif sweep == -1:
    sweep = num_devices // data
  elif data == -1:
    data = num_devices // sweep
  if sweep * data != num_devices:
    raise ValueError(f"mesh {sweep}x{data} does not use the {num_devices} devices")
  if num_members % sweep or batch_size % data:
    raise ValueError(f"mesh sweep={sweep} must divide the {num_members} members and data={data} the batch "
                     f"size {batch_size}")
  return sweep, data


def make_mesh(num_members: int, batch_size: int, sweep: int = -1, data: int = -1, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  shape = mesh_shape(num_members, batch_size, len(devices), sweep, data)
  return Mesh(np.asarray(devices).reshape(shape), (SWEEP, DATA))


def member_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (member) axis on 'sweep', everything else replicated."""
  return NamedSharding(mesh, P(SWEEP))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_members(tree, mesh: Mesh):
  return jax.device_put(tree, member_sharding(mesh))


def constrain_batch(x: jax.Array, mesh: Mesh) -> jax.Array:
  """Inside a `vmap(..., spmd_axis_name='sweep')` member function: put the batch axis on 'data'."""
  if mesh.shape[DATA] == 1:
    return x
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(DATA)))
