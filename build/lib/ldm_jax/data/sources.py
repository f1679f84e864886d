"""Where the raw archives live, how they are checked, and how they are fetched when absent.

Two directories matter:
  * the *data dir* holds the raw archives, laid out as in `shared/data` (`omniglot/images_background.zip`, ...).
    Resolution order: explicit argument (config `data.data_dir`), env `LDM_JAX_DATA_DIR`, `~/.cache/ldm_jax`.
  * the *build dir* holds the TFDS datasets built from them (array_record). It must be writable, so it is separate:
    explicit argument, env `LDM_JAX_BUILD_DIR`, `~/.cache/ldm_jax/tfds`.

An archive found locally is checked by structure and counts (re-packed copies differ byte-wise from the official
ones); an archive we download is checked against its published checksum before it is moved into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import tarfile
import tempfile
import urllib.request
import zipfile
from typing import Optional

ENV_DATA_DIR = "LDM_JAX_DATA_DIR"
ENV_BUILD_DIR = "LDM_JAX_BUILD_DIR"
DEFAULT_ROOT = pathlib.Path("~/.cache/ldm_jax")


class DataError(RuntimeError):
  """A raw archive is missing or corrupt; the message says which file, where, and what to do."""


def data_dir(explicit: Optional[str] = None) -> pathlib.Path:
  path = explicit or os.environ.get(ENV_DATA_DIR) or DEFAULT_ROOT
  return pathlib.Path(path).expanduser()


def build_dir(explicit: Optional[str] = None) -> pathlib.Path:
  path = explicit or os.environ.get(ENV_BUILD_DIR) or (DEFAULT_ROOT / "tfds")
  return pathlib.Path(path).expanduser()


def _count_members(path: pathlib.Path, suffix: str, pattern: Optional[str] = None,
                   magic: Optional[bytes] = None) -> int:
  """Members ending in `suffix`; in a zip every one of them must match `pattern` (the layout the builder reads)
  and start with `magic` (the file type its name claims), else DataError names the first that does not."""
  if path.name.endswith((".tar.gz", ".tgz")):
    with tarfile.open(path) as tar:
      return sum(1 for m in tar.getmembers() if m.isfile() and m.name.endswith(suffix))
  with zipfile.ZipFile(path) as zf:
    bad = zf.testzip()  # CRC of every member: catches truncation and bit rot
    if bad is not None:
      raise DataError(f"{path}: member {bad} fails its CRC check (corrupt archive)")
    names = [n for n in zf.namelist() if n.endswith(suffix) and "__MACOSX" not in n]
    for name in names:
      if pattern and not re.search(pattern, name):
        raise DataError(f"{path}: member {name} is not where the dataset keeps its files (expected paths like "
                        f"{pattern!r}): wrongly named folders?")
      if magic:
        with zf.open(name) as f:
          if f.read(len(magic)) != magic:
            raise DataError(f"{path}: member {name} is not a {suffix.lstrip('.').upper()} file")
    return len(names)


@dataclasses.dataclass(frozen=True)
class Archive:
  """One raw file of a dataset.

  Attributes:
    relpath: path below the data dir.
    members: (suffix, expected count) checked on every archive, local or downloaded; None for plain files.
    member_pattern / magic: every such member's path matches the regex, and its bytes start with `magic`.
    url: official download address, or None where no official archive exists.
    md5 / sha256: published checksum of the file at `url`.
    how_to_get: shown when the file is missing and cannot be downloaded.
  """

  relpath: str
  members: Optional[tuple[str, int]] = None
  url: Optional[str] = None
  md5: Optional[str] = None
  sha256: Optional[str] = None
  how_to_get: str = ""
  member_pattern: Optional[str] = None
  magic: Optional[bytes] = None

  def check_structure(self, path: pathlib.Path) -> None:
    if self.members is None:
      return
    suffix, expected = self.members
    try:
      found = _count_members(path, suffix, self.member_pattern, self.magic)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
      raise DataError(f"{path} is not a readable archive ({e}); delete it and fetch it again. "
                      f"{self.how_to_get}") from e
    if found != expected:
      raise DataError(f"{path} holds {found} '*{suffix}' files, expected {expected}: incomplete or wrong "
                      f"archive. {self.how_to_get}")

  def check_checksum(self, path: pathlib.Path) -> None:
    for algo, want in (("md5", self.md5), ("sha256", self.sha256)):
      if want:
        got = _file_digest(path, algo)
        if got != want:
          raise DataError(f"{path}: {algo} {got} does not match the published {want} (corrupt download)")


def _file_digest(path: pathlib.Path, algo: str) -> str:
  h = hashlib.new(algo)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _download(url: str, dest: pathlib.Path, archive: Archive) -> None:
  """Download to a temporary file beside `dest`, verify, then rename: a failure leaves nothing behind."""
  from tqdm.auto import tqdm

  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
  try:
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
      total = int(resp.headers.get("Content-Length") or 0) or None
      with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
        for chunk in iter(lambda: resp.read(1 << 20), b""):
          out.write(chunk)
          bar.update(len(chunk))
    archive.check_checksum(pathlib.Path(tmp))
    archive.check_structure(pathlib.Path(tmp))
    os.replace(tmp, dest)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def fetch(archive: Archive, root: Optional[str] = None, download: bool = True) -> pathlib.Path:
  """Returns the checked local path of `archive`, downloading it into the data dir when absent."""
  base = data_dir(root)
  path = base / archive.relpath
  if path.exists():
    archive.check_structure(path)
    return path
  if download and archive.url:
    try:
      _download(archive.url, path, archive)
    except DataError:
      raise
    except Exception as e:  # network down, read-only dir, ...
      raise DataError(f"{archive.relpath} is not in {base} and downloading {archive.url} failed: {e}. "
                      f"{archive.how_to_get}") from e
    return path
  raise DataError(f"Missing {archive.relpath}: looked for {path} (data dir from config data.data_dir, env "
                  f"{ENV_DATA_DIR}, else {DEFAULT_ROOT}). {archive.how_to_get}")


_BRENDEN = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_HOW_OMNIGLOT = ("Get it from https://github.com/brendenlake/omniglot (python/) and put it under "
                 "<data dir>/omniglot/.")
_HOW_QUICKDRAW = ("There is no official archive of this subset: see shared/data/SOURCES.md for the repositories "
                  "it was packed from, and put the file under <data dir>/quickdraw/.")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OMNIGLOT_MEMBER = r"images_(background|evaluation)/([^/]+)/character(\d+)/(\d+)_(\d+)\.png$"
OMNIGLOT_BACKGROUND = Archive("omniglot/images_background.zip", (".png", 19280), _BRENDEN + "images_background.zip",
                              md5="68d2efa1b9178cc56df9314c21c6e718", how_to_get=_HOW_OMNIGLOT,
                              member_pattern=OMNIGLOT_MEMBER, magic=PNG_MAGIC)
OMNIGLOT_EVALUATION = Archive("omniglot/images_evaluation.zip", (".png", 13180), _BRENDEN + "images_evaluation.zip",
                              md5="6b91aef0f799c5bb55b94e3f2daec811", how_to_get=_HOW_OMNIGLOT,
                              member_pattern=OMNIGLOT_MEMBER, magic=PNG_MAGIC)
OMNIGLOT_NPZ = Archive("sketchrnn_datasets_hardmaru/omniglot.npz", None,
                       "https://github.com/hardmaru/sketch-rnn-datasets/raw/master/omniglot/omniglot.npz",
                       sha256="bd5277621a8c577919491dfa729a59a8b5c216cff9e4fda9cef532db29f120c7")
OMNIGLOT_STROKES = tuple(
    Archive(f"omniglot/strokes_background_small{k}.zip", (".txt", n), _BRENDEN + f"strokes_background_small{k}.zip",
            sha256=sha, how_to_get=_HOW_OMNIGLOT)
    for k, n, sha in ((1, 2720, "8cb3960fb6cf4ccf5f064ad83169f828c36c36782a0f6e7faacb7ecfae4468a2"),
                      (2, 3120, "345bf2141efbea062833dbb2828abbc23d9e07825e46f2afdd4daecddfed6e78")))
_PROTONETS = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals/"
VINYALS_SPLITS = {
    name: Archive(f"splits/omniglot_vinyals_protonets/{name}.txt", None, _PROTONETS + f"{name}.txt", sha256=sha,
                  how_to_get="Get it from https://github.com/jakesnell/prototypical-networks (data/omniglot/splits).")
    for name, sha in (("train", "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0"),
                      ("val", "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a"),
                      ("test", "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204"))
}
QUICKDRAW_CATEGORIES = Archive(
    "quickdraw/categories.txt", None,
    "https://raw.githubusercontent.com/googlecreativelab/quickdraw-dataset/master/categories.txt",
    sha256="6326fde883ce71b53153bdf50b3671dc6652c8c14e67c7d07d23c1af6d103f4b",
    how_to_get="Get it from https://github.com/googlecreativelab/quickdraw-dataset.")
QUICKDRAW_NDJSON = {
    "raw": Archive("quickdraw/quickdraw_raw_head_exupery_345cats.tar.gz", (".ndjson", 345), how_to_get=_HOW_QUICKDRAW),
    "simplified": Archive("quickdraw/quickdraw_simplified_head25_lamnguyen_344cats.tar.gz", (".ndjson", 344),
                          how_to_get=_HOW_QUICKDRAW),
}
QUICKDRAW_BITMAPS = (
    Archive("quickdraw/quickdraw_bitmap28_sukumr.zip", (".npy", 6), how_to_get=_HOW_QUICKDRAW),
    Archive("quickdraw/quickdraw_bitmap28_elicorrales.zip", (".bin", 10), how_to_get=_HOW_QUICKDRAW),
    Archive("quickdraw/quickdraw_bitmap28_codingtrain.zip", (".bin", 3), how_to_get=_HOW_QUICKDRAW),
)
_HOW_CLICKME = ("It comes from https://github.com/serre-lab/click_draw (images/ and db_dump/); see "
                "shared/data/SOURCES.md, and put it under <data dir>/clickme_quickdraw/.")
CLICKME_IMAGES = Archive("clickme_quickdraw/images.zip", (".jpg", 250), how_to_get=_HOW_CLICKME)
CLICKME_TABLE = Archive("clickme_quickdraw/clickme_images_table.json.gz", None, how_to_get=_HOW_CLICKME)

