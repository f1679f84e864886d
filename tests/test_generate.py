"""`python -m ldm_jax.generate`: a user's drawing prepared exactly as the data layer prepares Omniglot."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from ldm_jax.data import omniglot, sources
from ldm_jax.generate import DrawingError, prepare_drawing


def _omniglot_pngs(k=2):
  path = sources.data_dir() / "omniglot" / "images_background.zip"
  if not path.exists():
    pytest.skip(f"no Omniglot archive at {path}")
  with zipfile.ZipFile(path) as z:
    names = sorted(n for n in z.namelist() if n.endswith(".png"))[:k]
    return [z.read(n) for n in names]


@pytest.mark.real_data
def test_a_real_omniglot_png_is_prepared_like_the_data_layer_in_either_polarity_and_mode(tmp_path):
  for i, png in enumerate(_omniglot_pngs()):
    want = omniglot.decode_png(png, 48)
    (tmp_path / "a.png").write_bytes(png)
    np.testing.assert_array_equal(prepare_drawing(tmp_path / "a.png", 48), want)
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    Image.fromarray(255 - grey).save(tmp_path / "negative.png")             # white strokes on black
    np.testing.assert_array_equal(prepare_drawing(tmp_path / "negative.png", 48), want)
    Image.fromarray(grey).convert("RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(prepare_drawing(tmp_path / "rgb.png", 48), want)


def test_padding_and_crop_and_errors(tmp_path):
  ink = np.zeros((20, 40), np.uint8)
  ink[8:12, 10:30] = 255                                                   # a bar, white on black, 20×40
  Image.fromarray(ink).save(tmp_path / "bar.png")
  square = prepare_drawing(tmp_path / "bar.png", 40)                       # padded to 40×40: rows 10..29 hold it
  np.testing.assert_array_equal(square[18:22, 10:30], 255)
  assert square[:18].max() == 0 and square[22:].max() == 0
  cropped = prepare_drawing(tmp_path / "bar.png", 20, crop_margin=0.0)    # 4×20 bar → square 20×20, no resize
  assert cropped.shape == (20, 20) and cropped[8:12].min() == 255 and cropped[:8].max() == 0
  (tmp_path / "text.png").write_text("not an image")
  with pytest.raises(DrawingError, match="text.png: not a readable image"):
    prepare_drawing(tmp_path / "text.png", 48)
  Image.fromarray(np.full((30, 30), 255, np.uint8)).save(tmp_path / "blank.png")
  with pytest.raises(DrawingError, match="blank.png: the image is blank"):
    prepare_drawing(tmp_path / "blank.png", 48)
