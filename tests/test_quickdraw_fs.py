"""QuickDraw as a one-shot task: held-out categories, and the QuickDraw-FS construction (paper A.1)."""

import numpy as np
import pytest

from ldm_jax import data
from ldm_jax.data import quickdraw, quickdraw_fs


def test_silhouette_hand_case():
  x = np.array([[0.0], [1.0], [10.0], [11.0]])
  # points 0 and 11: a = 1, b = 10.5; points 1 and 10: a = 1, b = 9.5
  want = (9.5 / 10.5 + 8.5 / 9.5) / 2
  assert quickdraw_fs.silhouette(x, np.array([0, 0, 1, 1])) == pytest.approx(want)
  assert quickdraw_fs.silhouette(x, np.zeros(4, int)) == 0.0


def test_clusters_are_found_only_where_there_are_two_concepts():
  rng = np.random.default_rng(0)
  two = np.concatenate([rng.normal([1, 0, 0], 0.05, (30, 3)), rng.normal([0, 1, 0], 0.05, (20, 3))])
  labels, centroids = quickdraw_fs.cluster_category(two, 4, 0.1, seed=0)
  assert len(centroids) == 2 and sorted(np.bincount(labels)) == [20, 30]
  assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1
  one = rng.normal([1, 0, 0], 0.05, (50, 3))
  # one blob: no split reaches the silhouette threshold of a real second concept
  labels, centroids = quickdraw_fs.cluster_category(one, 4, 0.5, seed=0)
  assert len(centroids) == 1 and set(labels) == {0}


@pytest.mark.real_data
def test_category_splits_are_disjoint_and_fixed_by_the_official_list():
  official = quickdraw.read_categories()
  held = quickdraw.held_out_categories(official)
  assert len(official) == 345 and len(held) == round(345 * 115 / 665) == 60
  assert held == quickdraw.held_out_categories(list(reversed(official)))        # order does not matter
  names = lambda d: set(np.asarray(official)[d["class_names"]])
  train, test = (data.load("quickdraw", s, variant="raw", exemplar_space="") for s in ("train", "test"))
  every = data.load("quickdraw", "all", variant="raw", exemplar_space="")
  assert names(test) == held and names(train) == set(official) - held
  assert len(train["labels"]) + len(test["labels"]) == len(every["labels"])
  assert not set(train["key_id"].tolist()) & set(test["key_id"].tolist())
  with pytest.raises(ValueError, match="unknown QuickDraw split 'val'"):
    quickdraw.category_rows(np.array(["cat"]), "val")


@pytest.mark.real_data
def test_quickdraw_fs_built_from_real_drawings(tmp_path):
  """Small clusters of the raw Quick, Draw! heads (11–114 drawings per category): every new class is drawings of
  one source category, its exemplar is the member nearest its centroid, held-out categories' clusters come last,
  and the file reads back through the official loader and as the `quickdraw_fs` dataset."""
  d = data.load("quickdraw", "all", variant="raw", exemplar_space="")
  keep = np.isin(d["labels"], np.arange(40))                  # 40 categories keep the test quick
  images, cats = d["images"][keep], d["class_names"][d["labels"][keep]]
  pool = lambda x: x.reshape(len(x), 12, 4, 12, 4).mean((2, 4)).reshape(len(x), -1)   # a stand-in embedding
  built = quickdraw_fs.build(images, cats, pool, per_class=10, max_clusters=3, seed=0)
  names = np.asarray(quickdraw.read_categories())
  c, n = built["data"].shape[:2]
  assert n == 10 and c >= 40 and built["prototype"].shape == (c, 1, 48, 48)
  held = quickdraw.held_out_categories(list(names))
  t = int(built["test_from"])
  sources = built["source_category"]
  assert all(s not in held for s in sources[:t]) and all(s in held for s in sources[t:])
  row_cat = names[cats]
  for k in range(c):
    assert set(row_cat[built["rows"][k]]) == {built["source_category"][k]} == {row_cat[built["exemplar_row"][k]]}
    np.testing.assert_array_equal(built["data"][k], images[built["rows"][k]])
  # the exemplar is the member of its cluster nearest the cluster's centroid
  k = 0
  rows = np.flatnonzero(row_cat == built["source_category"][k])
  ci = list(np.unique(row_cat)).index(built["source_category"][k])   # build seeds category ci with 1000·ci
  labels, centroids = quickdraw_fs.cluster_category(pool(images[rows]), 3, 0.1, seed=1000 * ci)
  f = pool(images[rows]) / np.linalg.norm(pool(images[rows]), axis=1, keepdims=True)
  mine = labels[rows == built["exemplar_row"][k]][0]
  members = np.flatnonzero(labels == mine)
  assert rows[members[np.argmin(np.linalg.norm(f[members] - centroids[mine], axis=1))]] == built["exemplar_row"][k]
  assert set(built["rows"][k]) <= set(rows[members])

  path = quickdraw_fs.write(tmp_path / "qdfs.npz", built)
  test = quickdraw.load_quickdraw_fs(path, "test")
  assert len(test["exemplars"]) == c - t and test["images"].shape == ((c - t) * 10, 48, 48)
  (tmp_path / "quickdraw_fs").mkdir()
  path.rename(tmp_path / data.QUICKDRAW_FS_FILE)
  split = data.load("quickdraw_fs", "train", data_dir=str(tmp_path))
  assert split["images"].shape == (t * 11, 48, 48)            # 10 drawings + the exemplar per class
  np.testing.assert_array_equal(split["images"][split["exemplar_index"]], built["prototype"][:t, 0])
  assert np.all(split["labels"][split["exemplar_index"]] == np.arange(t))


def test_missing_quickdraw_fs_file_is_one_clear_error(tmp_path):
  with pytest.raises(data.DataError, match="no QuickDraw-FS file at .*python -m ldm_jax.data quickdraw_fs"):
    data.load("quickdraw_fs", "train", data_dir=str(tmp_path))
