"""The six latent regularizers as one table: what the configs, sweeps, study grids and figures know about each.

A regularizer's loss is code (`ldm_jax.regularizers`), its head is a module (`ldm_jax.models.rae.RAE`), and the
training forward pass (`ldm_jax.jobs.rae`) applies it; everything else — its place in the β vector, the β range of
the paper's sweeps (A.5), its β beside the prototype in Fig. 4, the extra views the encoder sees, its Fig. 3 panel
and colour — is read from here, so a new regularizer is one row plus its loss and head. Pure Python (no jax):
configs import it.
"""

from __future__ import annotations

import dataclasses

FAMILIES = ("standard", "supervised", "contrastive")       # Fig. 3's panels a), b), c)
VIEWS = ("", "exemplar", "augmented_pair")   # encoded besides x: nothing | the class exemplar | two augmentations


@dataclasses.dataclass(frozen=True)
class Regularizer:
  name: str
  family: str                         # one of FAMILIES
  paper_betas: tuple[float, ...]      # the β range of A.5 ([a:b::c] = from a to b in steps of c; logs in decades)
  views: str = ""                     # one of VIEWS
  partner_beta: float | None = None   # its β when combined with the prototype (Fig. 4a-d captions); None: never
  fig4_panel: str = ""                # the Fig. 4 panel of Prototype + this regularizer
  color: str = "tab:olive"

  def __post_init__(self):
    if self.family not in FAMILIES or self.views not in VIEWS:
      raise ValueError(f"regularizer {self.name!r}: family must be one of {FAMILIES}, views one of {VIEWS}")


REGISTRY: dict[str, Regularizer] = {r.name: r for r in (
    Regularizer("kl", "standard", (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5),
                partner_beta=1e-3, fig4_panel="c", color="tab:blue"),
    Regularizer("vq", "standard", (1, 2, 5, 10, 20, 30, 40, 50, 100), partner_beta=20.0, fig4_panel="d",
                color="tab:orange"),
    Regularizer("classification", "supervised", (0.7, 0.8, 0.9, *range(1, 11), 20, 30, 40), color="tab:green"),
    Regularizer("prototype", "supervised",
                (1e-4, 1e-3, 1e-2, 1e-1, 0.25, 0.5, 0.75, *range(1, 11), 15, 20, 25, 30, 100, 200, 500),
                views="exemplar", color="tab:red"),
    Regularizer("simclr", "contrastive", (1e-4, 1e-3, 1e-2, 1e-1, *range(1, 11)), views="augmented_pair",
                partner_beta=1.0, fig4_panel="b", color="tab:purple"),
    Regularizer("barlow", "contrastive", (*range(1, 11), 15, 20, 25, 30, 50, 100, 200), views="augmented_pair",
                partner_beta=30.0, fig4_panel="a", color="tab:brown"),
)}

# The β vector's order: a member's β is an array [len(REGULARIZERS)] of the compiled step, one weight per entry.
REGULARIZERS: tuple[str, ...] = tuple(REGISTRY)


def of_family(family: str) -> tuple[str, ...]:
  return tuple(r.name for r in REGISTRY.values() if r.family == family)


def with_views(views: str) -> tuple[str, ...]:
  return tuple(r.name for r in REGISTRY.values() if r.views == views)


def paper_betas() -> dict[str, tuple[float, ...]]:
  return {r.name: r.paper_betas for r in REGISTRY.values()}


def prototype_partners() -> dict[str, float]:
  """{regularizer: its β} for Fig. 4's Prototype + X models, in Fig. 4's panel order."""
  partners = sorted((r for r in REGISTRY.values() if r.partner_beta is not None), key=lambda r: r.fig4_panel)
  return {r.name: r.partner_beta for r in partners}
