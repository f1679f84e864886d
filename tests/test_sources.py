"""Bad input: missing, truncated and mis-checksummed archives give clear errors and leave nothing behind."""

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

from ldm_jax import data
from ldm_jax.data import sources

pytestmark = pytest.mark.real_data


def test_missing_archive_names_file_and_place(tmp_path):
  with pytest.raises(data.DataError) as e:
    sources.fetch(sources.QUICKDRAW_NDJSON["raw"], str(tmp_path))
  msg = str(e.value)
  assert "quickdraw_raw_head_exupery_345cats.tar.gz" in msg and str(tmp_path) in msg and "LDM_JAX_DATA_DIR" in msg


def test_truncated_zip_is_rejected_and_no_dataset_is_left(tmp_path):
  raw = tmp_path / "raw"
  (raw / "omniglot").mkdir(parents=True)
  src = sources.data_dir() / "omniglot/images_evaluation.zip"
  blob = src.read_bytes()
  (raw / "omniglot/images_evaluation.zip").write_bytes(blob[: len(blob) // 2])
  shutil.copy(sources.data_dir() / "omniglot/images_background.zip", raw / "omniglot/images_background.zip")
  build = tmp_path / "build"
  with pytest.raises(data.DataError, match="images_evaluation.zip"):
    data.load("omniglot", "all", data_dir=str(raw), build_dir=str(build), image_size=28)
  assert not list(build.rglob("*array_record*")), "half-built dataset left behind"
  assert not (build / "omniglot_full/size28/1.0.0").exists()
  assert not list(build.rglob("incomplete*"))


def test_zip_with_wrong_member_count_is_rejected(tmp_path):
  import zipfile
  src = sources.data_dir() / "omniglot/images_evaluation.zip"
  dst = tmp_path / "omniglot/images_evaluation.zip"
  dst.parent.mkdir()
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
    for name in zin.namelist()[:100]:
      zout.writestr(name, zin.read(name))
  with pytest.raises(data.DataError, match="expected 13180"):
    sources.fetch(sources.OMNIGLOT_EVALUATION, str(tmp_path))


@pytest.fixture
def local_server(tmp_path):
  """Serves the real split files over HTTP on the loopback interface."""
  served = tmp_path / "served"
  served.mkdir()
  shutil.copy(sources.data_dir() / "splits/omniglot_vinyals_protonets/val.txt", served / "val.txt")
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()


def test_download_checks_checksum(tmp_path, local_server):
  good = sources.Archive("splits/val.txt", url=f"{local_server}/val.txt",
                         sha256=sources.VINYALS_SPLITS["val"].sha256)
  path = sources.fetch(good, str(tmp_path / "root"))
  assert hashlib.sha256(path.read_bytes()).hexdigest() == good.sha256
  bad = sources.Archive("splits/val_bad.txt", url=f"{local_server}/val.txt", sha256="0" * 64)
  with pytest.raises(data.DataError, match="does not match"):
    sources.fetch(bad, str(tmp_path / "root2"))
  assert not list((tmp_path / "root2").rglob("*val*")), "a failed download must leave no file"
