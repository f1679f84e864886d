"""The base of every ldm_jax TFDS builder: raw archives come from the data dir (`sources.fetch`), not from TFDS's
download manager, and records keep generation order so that splits and row indices are reproducible."""

from __future__ import annotations

import tensorflow_datasets as tfds


class ArchiveBuilder(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  HOMEPAGE = ""

  def __init__(self, *, raw_dir: str | None = None, **kwargs):
    self._raw_dir = raw_dir
    super().__init__(**kwargs)

  def features(self) -> tfds.features.FeaturesDict:
    raise NotImplementedError

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__, features=self.features(),
                                 homepage=self.HOMEPAGE, disable_shuffling=True)
