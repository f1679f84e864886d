"""Reads PyTorch `.pt`/`.pth` files (the zip format of `torch.save`, PyTorch ≥ 1.6) into numpy, without torch.

A `torch.save` file is a zip holding `<name>/data.pkl` (a pickle whose tensors are `_rebuild_tensor_v2(storage,
offset, size, stride, ...)` calls and whose storages are persistent ids `('storage', <dtype class>, key, device,
numel)`) and one raw little-endian blob `<name>/data/<key>` per storage. The unpickler below only resolves that
handful of globals (anything else is refused: a checkpoint cannot run code), so nested dicts of tensors come back
as nested dicts of numpy arrays.
"""

from __future__ import annotations

import collections
import math
import pathlib
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
  """The file is not a readable `torch.save` zip (legacy format, unknown globals, missing blobs)."""


class _StorageType:
  def __init__(self, name: str):
    if name not in _STORAGE_DTYPES:
      raise TorchFileError(f"unsupported tensor storage type torch.{name}")
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _check_layout(storage: np.ndarray, offset, size, stride) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
  """Refuses a tensor whose view would read outside its storage (a hostile or corrupt file must not make
  `as_strided` read foreign memory); returns (offset, size, stride) as ints."""
  def ints(xs, what):
    if not isinstance(xs, (tuple, list)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in xs):
      raise TorchFileError(f"tensor {what} {xs!r} is not a tuple of integers")
    return tuple(xs)
  if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
    raise TorchFileError(f"tensor storage offset {offset!r} is not a non-negative integer")
  size, stride = ints(size, "size"), ints(stride, "stride")
  if len(size) != len(stride) or any(x < 0 for x in size + stride):
    raise TorchFileError(f"tensor size {size} and stride {stride} do not describe a tensor")
  n = len(storage)
  if 0 in size:
    return offset, size, stride
  extent = offset + sum((sz - 1) * st for sz, st in zip(size, stride)) + 1
  if extent > n or math.prod(size) > n:
    raise TorchFileError(f"tensor of size {size}, stride {stride} and offset {offset} needs "
                         f"{max(extent, math.prod(size))} elements; its storage holds {n} (corrupt or hostile file)")
  return offset, size, stride


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *unused) -> np.ndarray:
  del unused
  offset, size, stride = _check_layout(storage, offset, size, stride)
  if not size:
    if offset >= len(storage):
      raise TorchFileError(f"scalar tensor at offset {offset} is outside its storage of {len(storage)} elements")
    return storage[offset].copy()
  if 0 in size:
    return np.zeros(size, storage.dtype)
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                         strides=tuple(s * storage.itemsize for s in stride))
  return np.array(view)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
  del requires_grad, backward_hooks, unused
  return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  def __init__(self, file, blobs, byteorder: str):
    super().__init__(file)
    self._blobs, self._byteorder, self._storages = blobs, byteorder, {}

  def find_class(self, module, name):
    if module == "torch" and name.endswith("Storage"):
      return _StorageType(name)
    if (module, name) in _GLOBALS:
      return _GLOBALS[(module, name)]
    raise TorchFileError(f"refusing to load {module}.{name} from a checkpoint (only tensors and dicts are read)")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise TorchFileError(f"unknown persistent id {pid!r}")
    _, storage_type, key, _device, numel = pid[:5]
    if not isinstance(storage_type, _StorageType):
      raise TorchFileError(f"storage {key!r} has no tensor storage type")
    if key not in self._storages:
      dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
      blob = self._blobs(key)
      if not isinstance(numel, int) or len(blob) != numel * dtype.itemsize:
        raise TorchFileError(f"storage {key!r}: {len(blob)} bytes where {numel!r} elements of {dtype.itemsize} "
                             "bytes were declared (corrupt or hostile file)")
      self._storages[key] = np.frombuffer(blob, dtype).astype(storage_type.dtype)
    return self._storages[key]


def read(path: str | pathlib.Path) -> Any:
  """The object saved with `torch.save` (dicts, lists, numbers, tensors → numpy arrays)."""
  path = pathlib.Path(path)
  if not zipfile.is_zipfile(path):
    raise TorchFileError(f"{path} is not a zip-format torch file (saved by PyTorch < 1.6 or not a checkpoint); "
                         "re-save it with a recent torch.save")
  with zipfile.ZipFile(path) as zf:
    pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
      raise TorchFileError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
    root = pickles[0][: -len("data.pkl")]
    names = set(zf.namelist())
    byteorder = zf.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"

    def blob(key: str) -> bytes:
      member = f"{root}data/{key}"
      if member not in names:
        raise TorchFileError(f"{path}: storage {key} is missing from the archive")
      return zf.read(member)

    with zf.open(pickles[0]) as f:
      return _Unpickler(f, blob, byteorder).load()


def find_state_dict(obj: Any, required_key: str) -> dict[str, np.ndarray]:
  """The state dict inside a checkpoint object: `obj` itself or the first nested dict that holds `required_key`
  (e.g. `{'state_dict': ..., 'epoch': ...}`)."""
  if isinstance(obj, dict):
    if required_key in obj:
      return dict(obj)
    for value in obj.values():
      try:
        return find_state_dict(value, required_key)
      except KeyError:
        pass
  raise KeyError(f"no state dict with {required_key!r} in the checkpoint")
