"""The data layer on the real archives: counts, splits, polarity, strokes, QuickDraw, ClickMe, exemplars."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from ldm_jax import data
from ldm_jax.data import quickdraw, strokes

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def omniglot_all():
  return data.load("omniglot", "all", with_strokes=True, exemplar_space="")


def test_omniglot_counts(omniglot_all):
  d = omniglot_all
  assert d["images"].shape == (32460, 48, 48) and d["images"].dtype == np.uint8
  assert len(np.unique(d["character"])) == 1623
  assert len(np.unique(d["alphabet"])) == 50
  assert np.all(np.bincount(d["character"]) == 20)
  assert set(np.unique(d["drawer"])) == set(range(1, 21))
  bg, ev = data.load("omniglot", "background", exemplar_space=""), data.load("omniglot", "evaluation",
                                                                             exemplar_space="")
  assert len(np.unique(bg["character"])) == 964 and len(np.unique(ev["character"])) == 659


def test_omniglot_polarity_and_range(omniglot_all):
  x = omniglot_all["images"]
  assert x.min() == 0 and x.max() == 255
  # strokes = 1 on 0: most pixels are background (0); ink covers a small fraction of every drawing.
  ink = (x > 127).mean(axis=(1, 2))
  assert np.all(ink < 0.5) and ink.mean() < 0.15
  assert (x[:, 0, :] == 0).mean() > 0.95  # borders are background


def test_omniglot_strokes_where_archives_exist(omniglot_all):
  has = np.array([len(s) > 0 for s in omniglot_all["strokes"]])
  assert has.sum() == 2720 + 3120 - 1000  # the two labelled background subsets share 1,000 drawings
  s = omniglot_all["strokes"][np.flatnonzero(has)[0]]
  assert s.shape[1] == 3 and s[-1, 2] == 1
  np.testing.assert_allclose(strokes.stroke3_to_absolute(strokes.absolute_to_stroke3(s)), s, atol=1e-4)


def test_split_disjointness():
  train = data.load("omniglot", "paper_train", exemplar_space="")
  test = data.load("omniglot", "paper_test", exemplar_space="")
  assert not set(train["character"]) & set(test["character"])
  assert len(np.unique(test["character"])) == 150  # 3 per alphabet × 50
  assert set(np.unique(test["character_in_alphabet"])) == {1, 2, 3}
  assert len(train["labels"]) + len(test["labels"]) == 32460
  keys = {}
  for s in ("vinyals_train", "vinyals_val", "vinyals_test"):
    d = data.load("omniglot", s, exemplar_space="")
    keys[s] = set(zip(d["character"].tolist(), d["rotation"].tolist()))
    assert len(keys[s]) == len(np.unique(d["labels"]))
  assert len(keys["vinyals_train"]) == 4112 and len(keys["vinyals_test"]) == 1692
  assert not keys["vinyals_train"] & keys["vinyals_test"] and not keys["vinyals_val"] & keys["vinyals_test"]


def test_vinyals_rotation_is_applied():
  d = data.load("omniglot", "vinyals_test", exemplar_space="")
  base = data.load("omniglot", "all", exemplar_space="")
  i = np.flatnonzero(d["rotation"] == 90)[0]
  j = np.flatnonzero((base["character"] == d["character"][i]) & (base["drawer"] == d["drawer"][i]))[0]
  np.testing.assert_array_equal(d["images"][i], np.rot90(base["images"][j]))


def test_exemplar_is_most_central_drawing(omniglot_test):
  d = omniglot_test
  assert d["exemplar_index"].shape == (150,)
  np.testing.assert_array_equal(d["labels"][d["exemplar_index"]], np.arange(150))
  for c in (0, 77):
    rows = np.flatnonzero(d["labels"] == c)
    f = d["images"][rows].reshape(len(rows), -1) / 255.0
    assert rows[np.argmin(np.linalg.norm(f - f.mean(0), axis=1))] == d["exemplar_index"][c]


@pytest.mark.parametrize("variant,n_cat", [("raw", 345), ("simplified", 344)])
def test_quickdraw_every_category_parses(variant, n_cat):
  d = data.load("quickdraw", variant=variant, with_strokes=True, exemplar_space="")
  assert len(d["class_names"]) == n_cat
  assert d["images"].shape[1:] == (48, 48) and (d["images"].reshape(len(d["images"]), -1).max(1) > 0).all()
  for s in d["strokes"][:: max(1, len(d["strokes"]) // 200)]:
    absolute = strokes.stroke3_to_absolute(s)
    assert absolute[:, :2].min() >= -1e-3 and absolute[:, :2].max() <= 255 + 1e-3  # QuickDraw's 0..255 frame
    np.testing.assert_array_equal(strokes.stroke5_to_stroke3(strokes.stroke3_to_stroke5(s)), s)


def test_quickdraw_bitmap_byte_shift_is_undone():
  import zipfile

  from ldm_jax.data import sources
  root = sources.data_dir()
  with zipfile.ZipFile(root / "quickdraw/quickdraw_bitmap28_sukumr.zip") as z:
    sukumr = quickdraw.read_bitmap_member("cat.npy", z.read("quickdraw_bitmap28_sukumr/cat.npy"))
  with zipfile.ZipFile(root / "quickdraw/quickdraw_bitmap28_elicorrales.zip") as z:
    eli = quickdraw.read_bitmap_member("elicorrales/cat.4000.bin",
                                       z.read("quickdraw_bitmap28_elicorrales/cat.4000.bin"))
  np.testing.assert_array_equal(eli[:3000], sukumr[:3000])  # the same numpy_bitmap head, once re-aligned
  d = data.load("quickdraw_bitmap", exemplar_space="")
  assert d["images"].shape[1:] == (28, 28) and "cat" in d["class_names"]


def test_quickdraw_fs_loader_on_real_drawings(tmp_path):
  # 665 'classes' of 10 real drawings each, in the official layout: the 345 raw categories, then 320 simplified ones.
  groups = []
  for variant, n_classes in (("raw", 345), ("simplified", 320)):
    qd = data.load("quickdraw", variant=variant, exemplar_space="")
    groups += [qd["images"][qd["labels"] == c][:10] for c in range(n_classes)]
  images = np.stack(groups)                                  # [665, 10, 48, 48]
  path = tmp_path / "qdfs.npz"
  np.savez(path, data=images, prototype=images[:, :1])
  test = quickdraw.load_quickdraw_fs(path, "test")
  assert test["images"].shape == (115 * 10, 48, 48) and test["exemplars"].shape == (115, 48, 48)
  np.testing.assert_array_equal(test["exemplars"][0], images[550, 0])
  np.testing.assert_array_equal(test["labels"][:11], [0] * 10 + [1])
  assert quickdraw.load_quickdraw_fs(path, "train")["labels"].max() == 549


def test_clickme_heatmaps():
  d = data.load("clickme", exemplar_space="")
  assert d["images"].shape == (250, 48, 48) and len(d["class_names"]) == 25
  assert np.all(np.bincount(d["labels"]) == 10)
  assert np.allclose(d["heatmap"].max(axis=(1, 2)), 1.0)
  assert d["n_sessions"].min() > 0
  # Humans click on the drawing: click density is higher on ink than on background.
  ink = d["images"] > 64
  assert (d["heatmap"][ink].mean() > 2 * d["heatmap"][~ink].mean())


def test_info_cli_prints_json():
  out = subprocess.run([sys.executable, "-m", "ldm_jax.data", "info", "omniglot", "--split=paper_test"], cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
  record = json.loads(out.strip().splitlines()[-1])
  assert record["drawings"] == 3000 and record["classes"] == 150 and "paper_test" in record["splits"]


def test_every_dataset_refuses_an_unknown_split_before_reading_anything(tmp_path, monkeypatch):
  """One `Dataset` row per name: an unknown split is a one-line error before any build or read (the TFDS build and
  the npz reader must not run: both are replaced by failures here)."""
  monkeypatch.setattr(data, "data_source", lambda *a, **k: pytest.fail("built before the split was checked"))
  monkeypatch.setattr(data, "_omniglot_table", lambda *a, **k: pytest.fail("read before the split was checked"))
  for name in data.DATASETS:
    with pytest.raises(ValueError, match=f"unknown {name} split 'nope'"):
      data.load(name, "nope", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
    data.load("mnist")


def test_few_shot_sets_are_alphabets_of_omniglot_and_classes_of_quickdraw(omniglot_all):
  rows, known = data.set_rows("omniglot", omniglot_all, "Korean")
  assert len(known) == 50 and len(rows) == 40 * 20 and set(omniglot_all["alphabet"][rows]) == {"Korean"}
  qd = data.load("quickdraw_bitmap", "all", exemplar_space="")
  rows, known = data.set_rows("quickdraw_bitmap", qd, known_qd := str(qd["class_names"][0]))
  assert known_qd in known and (qd["labels"][rows] == 0).all() and len(rows) == (qd["labels"] == 0).sum()
  assert len(data.set_rows("quickdraw_bitmap", qd, "no such class")[0]) == 0
