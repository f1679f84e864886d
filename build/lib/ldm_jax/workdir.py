"""A run's workdir is held by one job at a time, and a refused run leaves it exactly as it was.

`hold(workdir)` takes an exclusive `flock` on `<workdir>/.lock` and writes the holder (pid, host, start time) into
it. The kernel drops the lock when its process dies, however it dies (kill -9 included), so a stale lock of a
killed job is taken over by the next job without any clean-up; a live holder makes a second job fail at once with
the holder named. Locks are re-entrant within a process (a job that runs other jobs in sub-directories, or calls
itself through the library, does not lock itself out).

`refuse_existing_run(workdir, resume)` is the check that runs before a job writes anything: a workdir with
checkpoints is continued only with `--resume`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import socket
import time

LOCK_NAME = ".lock"
_HELD: dict[pathlib.Path, int] = {}     # workdir → open lock fd, for this process


class WorkdirBusyError(RuntimeError):
  """Another live job holds the workdir."""


class ExistingRunError(RuntimeError):
  """The workdir holds a run and --resume was not given."""


def _holder(path: pathlib.Path) -> str:
  try:
    h = json.loads(path.read_text() or "{}")
  except (OSError, ValueError):
    return "another process"
  return f"pid {h.get('pid')} on {h.get('host')} (since {h.get('started')})"


@contextlib.contextmanager
def hold(workdir: str | pathlib.Path):
  """Holds `workdir` for the duration of the block; raises WorkdirBusyError if another live process holds it."""
  workdir = pathlib.Path(workdir).absolute()
  if workdir in _HELD:
    yield workdir
    return
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK_NAME
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EAGAIN, errno.EACCES):
      raise WorkdirBusyError(f"{workdir} is in use by {_holder(path)}: wait for that job or choose another "
                             "--workdir") from None
    raise
  os.ftruncate(fd, 0)
  os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
  _HELD[workdir] = fd
  try:
    yield workdir
  finally:
    del _HELD[workdir]
    os.close(fd)             # releases the flock; the file stays (unlinking it would race a waiting job)


def checkpoint_dirs(workdir: str | pathlib.Path) -> list[pathlib.Path]:
  """Every `checkpoints` directory under `workdir` (a job's own, or its stages') that holds a saved step."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    return []
  found = []
  for d in sorted(workdir.rglob("checkpoints")):
    if d.is_dir() and any(p.name.isdigit() for p in d.iterdir()):
      found.append(d)
  return found


def latest_step(checkpoints: pathlib.Path) -> int | None:
  steps = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.is_dir() else []
  return max(steps) if steps else None


def refuse_existing_run(workdir: str | pathlib.Path, resume: bool) -> None:
  """Raises ExistingRunError when `workdir` holds checkpoints and `resume` is False (nothing has been written)."""
  if resume:
    return
  found = checkpoint_dirs(workdir)
  if found:
    where = ", ".join(f"{d.relative_to(workdir) if d != pathlib.Path(workdir) else d} (step {latest_step(d)})"
                      for d in found[:3])
    raise ExistingRunError(f"{workdir} already holds a run ({where}): pass --resume to continue it, or choose "
                           "another --workdir")
