"""Checksum manifests: a directory of saved arrays (an LDM export, a checkpoint step) carries `manifest.json`
with the SHA-256 and size of every file in it, written at save and verified before anything is read back.

Orbax and tensorstore read a flipped byte back as a wrong number without a word; a manifest turns that into a
clear error naming the file. `identity(directory)` is a short content hash of the whole directory (the hash of
its manifest), e.g. to key caches of what a model generated.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

NAME = "manifest.json"


class CorruptFileError(ValueError):
  """A file of a saved directory is missing, truncated or changed since it was written."""


def _digest(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _files(directory: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != NAME)


def write(directory: str | pathlib.Path) -> dict:
  """Writes `<directory>/manifest.json` for every file below `directory` (atomically: temp file + rename)."""
  directory = pathlib.Path(directory)
  entries = {str(p.relative_to(directory)): {"sha256": _digest(p), "bytes": p.stat().st_size}
             for p in _files(directory)}
  tmp = directory / f".{NAME}.tmp"
  tmp.write_text(json.dumps(entries, indent=0, sort_keys=True))
  os.replace(tmp, directory / NAME)
  return entries


def exists(directory: str | pathlib.Path) -> bool:
  return (pathlib.Path(directory) / NAME).exists()


def verify(directory: str | pathlib.Path, what: str = "") -> None:
  """Raises CorruptFileError naming the first file that is missing, of another size or another hash."""
  directory = pathlib.Path(directory)
  label = what or str(directory)
  try:
    entries = json.loads((directory / NAME).read_text())
  except FileNotFoundError:
    raise CorruptFileError(f"{label}: no {NAME} (an incomplete save, or written by an older ldm_jax: re-export "
                           "it)") from None
  except ValueError as e:
    raise CorruptFileError(f"{label}: {NAME} is unreadable ({e})") from None
  for rel, want in entries.items():
    path = directory / rel
    if not path.is_file():
      raise CorruptFileError(f"{label}: {rel} is missing (truncated or partly deleted)")
    if path.stat().st_size != want["bytes"]:
      raise CorruptFileError(f"{label}: {rel} has {path.stat().st_size} bytes, {want['bytes']} were written "
                             "(truncated or changed)")
    if _digest(path) != want["sha256"]:
      raise CorruptFileError(f"{label}: {rel} does not match its checksum (corrupted since it was written)")


def identity(directory: str | pathlib.Path) -> str:
  """SHA-256 of the directory's manifest: changes whenever any file in it changes."""
  return hashlib.sha256((pathlib.Path(directory) / NAME).read_bytes()).hexdigest()
