"""The evaluation job: trained one-shot generators (and sample files of any model) → originality vs
recognizability against the human point, the Fig. 3/4 plot, a table, sample grids, and optionally the
feature-importance study (Fig. 5) on ClickMe-QuickDraw.

Inputs (config `evaluate`): LDM job workdirs (every model exported under `<dir>/models/<i>`, latent or pixel
space) and/or npz files holding `images` [C, n, H, W] and `exemplars` [C, H, W]; a critics workdir. Samples are
generated for the first `max_classes` test exemplars and cached in `<workdir>/samples/<name>.npz`, so a resumed
run only scores. Outputs in the workdir: `scores.json`, `table.md`, `originality_recognizability.png`,
`samples_<name>.png`, `samples_by_regularizer.png` (Fig. 2), and with `importance.enabled` also `importance.json`
and `importance_maps.png`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ldm_jax import data as data_lib
from ldm_jax import ldm as ldm_lib
from ldm_jax import manifest
from ldm_jax.eval import figures, importance, judge, scores
from ldm_jax.regularizer_registry import REGULARIZERS

pass

log = logging.getLogger(__name__)


def active_betas(member: dict) -> dict[str, float]:
  """A model's identity: the β of every active (β > 0) regularizer of its RAE, in the RAE's order."""
  return {r: float(b) for r, b in (member.get("beta") or {}).items() if b > 0}


def assign_curves(models: list[dict]) -> list[dict]:
  """Each latent model's curve (`regularizer`) and its swept `beta`, from the full β vectors of all models.

  Models with the same active set form a group; the regularizer whose β takes the most values within the group is
  the swept one (Fig. 4: the prototype β beside a fixed KL/VQ/SimCLR/Barlow β). A curve is the set of models that
  differ only in the swept β, so two sweeps with different fixed partners are two curves, labelled with the partner's β.
  """
  groups: dict[tuple, list[dict]] = {}
  for m in models:
    if m["kind"] == "ldm":
      groups.setdefault(tuple(m["betas"]), []).append(m)
  for regs, group in groups.items():
    if not regs:
      for m in group:
        m["regularizer"], m["beta"], m["swept"] = "none", 0.0, ""
      continue
    distinct = {r: len({m["betas"][r] for m in group}) for r in regs}
    swept = max(regs, key=lambda r: distinct[r])      # the swept β takes the most values (first on a tie)
    fixed = lambda m: tuple((r, m["betas"][r]) for r in regs if r != swept)
    several = len({fixed(m) for m in group}) > 1
    for m in group:
      m["swept"], m["beta"] = swept, m["betas"][swept]
      m["regularizer"] = "+".join(r if r == swept or not several else f"{r}={m['betas'][r]:g}" for r in regs)
  return models


def discover_models(ldm_workdirs) -> list[dict]:
  """Every exported model of the given LDM job workdirs, with a unique name, its full β vector (`betas`), its
  curve (`regularizer`) and swept β (`assign_curves`)."""
  found = []
  for wd in ldm_workdirs:
    models = sorted((pathlib.Path(wd) / "models").glob("*/ldm.json"), key=lambda p: int(p.parent.name))
    if not models:
      raise FileNotFoundError(f"no exported models in {wd}/models: is it a finished LDM job workdir?")
    for spec_path in models:
      spec = json.loads(spec_path.read_text())
      member = spec.get("member", {})
      pixel = spec["space"] == "pixel"
      found.append({"name": "pixel" if pixel else "ldm_" + member.get("name", spec_path.parent.name),
                    "kind": "pixel" if pixel else "ldm", "regularizer": "none", "beta": 0.0,
                    "betas": {} if pixel else active_betas(member), "path": str(spec_path.parent),
                    "diverged": bool(member.get("diverged"))})
  assign_curves(found)
  seen: dict[str, int] = {}
  for m in found:                              # two sweeps may both hold e.g. 'prototype=0'
    seen[m["name"]] = seen.get(m["name"], 0) + 1
    if seen[m["name"]] > 1:
      m["name"] += f"#{seen[m['name']]}"
  return found


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=+-]", "_", name)


def sampler_label(sc) -> str:
  """'ddpm (all T steps)' or 'ddim 100 steps, η=1' — how a generated set was drawn, for tables."""
  return "ddpm (all T steps)" if sc.sampler == "ddpm" else f"ddim {sc.ddim_steps} steps, η={float(sc.ddim_eta):g}"


def sample_provenance(model_info: dict, exemplars: np.ndarray, ec) -> dict[str, Any]:
  """Everything that determines a generated set: the export's content hash, the sampler settings, the seed and
  the exemplars. A cached set is reused only when all of it matches."""
  return {"export": manifest.identity(model_info["path"]), "sampler": ec.sampler, "ddim_steps": int(ec.ddim_steps),
          "ddim_eta": float(ec.ddim_eta),
          "guidance": float(ec.guidance), "seed": int(ec.seed), "samples_per_class": int(ec.samples_per_class),
          "chunk": int(ec.chunk), "exemplars": hashlib.sha256(np.ascontiguousarray(exemplars).tobytes()).hexdigest(),
          "exemplars_shape": list(exemplars.shape)}


def _cached(cache: pathlib.Path, provenance: dict) -> dict[str, np.ndarray] | None:
  if not cache.exists():
    return None
  try:
    with np.load(cache) as z:
      if "provenance" not in z.files or json.loads(str(z["provenance"])) != provenance:
        return None
      return {"images": z["images"], "exemplars": z["exemplars"]}
  except (OSError, ValueError, KeyError, EOFError):   # a cache written by a killed run: generate again
    return None


def generate_set(model_info: dict, exemplars: np.ndarray, ec, cache: pathlib.Path) -> dict[str, np.ndarray]:
  """n samples per exemplar from an exported model (verified against its manifest), cached with their provenance
  (images uint8 to keep caches small)."""
  manifest.verify(model_info["path"], f"LDM export {model_info['path']}")
  provenance = sample_provenance(model_info, exemplars, ec)
  hit = _cached(cache, provenance)
  if hit is not None:
    return hit
  model, _ = ldm_lib.load(model_info["path"], verify=False)   # verified above: hash the export once
  out = ldm_lib.generate(model, exemplars, ec.samples_per_class, jax.random.PRNGKey(ec.seed), guidance=ec.guidance,
                         sampler=ec.sampler, ddim_steps=ec.ddim_steps, chunk=ec.chunk, ddim_eta=ec.ddim_eta,
                         name=f"model {model_info['name']} ({model_info['path']})")
  images = np.round(np.clip(out["images"], 0, 1) * 255).astype(np.uint8)
  cache.parent.mkdir(parents=True, exist_ok=True)
  tmp = cache.with_name(cache.name + ".tmp.npz")
  np.savez_compressed(tmp, images=images, exemplars=exemplars, provenance=json.dumps(provenance, sort_keys=True))
  os.replace(tmp, cache)
  return {"images": images, "exemplars": exemplars}


def load_sample_file(path: str) -> dict[str, np.ndarray]:
  """A sample file: npz with `images` [C, n, H, W] and `exemplars` [C, H, W] (uint8, or floats in [0, 1])."""
  try:
    z = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise FileNotFoundError(f"sample file {path} does not exist") from None
  except (OSError, ValueError, EOFError) as e:
    raise judge.SampleSetError(f"{path} is not an npz sample file ({type(e).__name__}: {e})") from None
  if not isinstance(z, np.lib.npyio.NpzFile):
    raise judge.SampleSetError(f"{path} holds a single array, not an npz with 'images' and 'exemplars'")
  with z:
    missing = {"images", "exemplars"} - set(z.files)
    if missing:
      raise judge.SampleSetError(f"{path} lacks {sorted(missing)}: a sample file holds images [C, n, H, W] and "
                                 "exemplars [C, H, W]")
    try:
      images, exemplars = z["images"], z["exemplars"]
    except (OSError, ValueError, EOFError) as e:
      raise judge.SampleSetError(f"{path}: unreadable arrays ({e})") from None
  if images.ndim != 4 or exemplars.shape != (images.shape[0], *images.shape[2:]):
    raise judge.SampleSetError(f"{path}: images {images.shape} and exemplars {exemplars.shape} do not match "
                               "([C, n, H, W] and [C, H, W])")
  return {"images": images, "exemplars": exemplars}


def place_points(results: list[dict]) -> list[dict]:
  """Normalised originality across every point (models and humans) and the distance to the human point."""
  human = next(i for i, r in enumerate(results) if r["kind"] == "human")
  ori, dist = scores.place_on_human_plane([r["originality"] for r in results],
                                          [r["recognizability"] for r in results], human)
  for r, o, d in zip(results, ori, dist):
    r["originality_norm"], r["distance_to_human"] = float(o), float(d)
  by_reg: dict[str, list[dict]] = {}
  for r in results:
    if r["kind"] == "ldm" and r["regularizer"] != "none" and not r.get("diverged"):   # a broken model is no candidate
      by_reg.setdefault(r["regularizer"], []).append(r)
  for group in by_reg.values():
    min(group, key=lambda r: r["distance_to_human"])["closest"] = True
  return results


def parametric_fits(results: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Per regularizer (curve) with at least three distinct β > 0: (log10 β grid, originality, recognizability) of
  `scores.parametric_fit` (Fig. 3/4 curves, A.5); diverged models are left out of the fit."""
  fits = {}
  for reg in {r["regularizer"] for r in results if r["kind"] == "ldm" and r["regularizer"] != "none"}:
    group = [r for r in results if r["kind"] == "ldm" and r["regularizer"] == reg and r["beta"] > 0
             and not r.get("diverged")]
    if len({r["beta"] for r in group}) >= 3:
      fits[reg] = scores.parametric_fit([r["beta"] for r in group], [r["originality_norm"] for r in group],
                                        [r["recognizability"] for r in group])
  return fits


def write_figures(out: pathlib.Path, results: list[dict], title: str = "") -> list[str]:
  """Every originality–recognizability figure of `results` (points as in scores.json): all points on one plane
  (Fig. 4 for combinations), Fig. 3's three panels, and Fig. A.4–A.9's three panels per single regularizer.
  Returns the file names written."""
  fits = parametric_fits(results)
  written = ["originality_recognizability.png", "fig3.png"]
  figures.write_originality_recognizability(out / written[0], results, fits, title=title)
  figures.write_fig3(out / written[1], results, fits, title=title)
  for reg in sorted({r["regularizer"] for r in results if r["kind"] == "ldm"} & set(REGULARIZERS)):
    chosen = [r for r in results if r["kind"] == "human" or r["regularizer"] in (reg, "none")]
    written.append(f"beta_{reg}.png")
    figures.write_beta_panels(out / written[-1], reg, chosen, fits.get(reg))
  return written


def replot(workdir: str | pathlib.Path, out: str | pathlib.Path | None = None) -> list[str]:
  """Regenerate an evaluation's figures from its scores.json (an eval workdir, or the json file itself, e.g.
  committed results) into `out` (default: beside the json) without re-scoring."""
  src = pathlib.Path(workdir)
  src = src / "scores.json" if src.is_dir() else src
  out = pathlib.Path(out) if out is not None else src.parent
  out.mkdir(parents=True, exist_ok=True)
  summary = json.loads(src.read_text())
  written = write_figures(out, summary["points"], summary.get("data", ""))
  imp = summary.get("importance")
  if imp and imp.get("spearman"):
    figures.write_importance_bars(out / "importance_spearman.png", imp["spearman"], imp["human_consistency"],
                                  imp.get("wilcoxon_greater", {}), imp.get("baseline"))
    written.append("importance_spearman.png")
  return written


def write_table(path: pathlib.Path, results: list[dict], critics: dict | None = None) -> None:
  lines = [f"Critics: {_describe(critics)}.", ""] if critics else []
  lines += ["| model | regularizer | β | originality | originality (norm.) | recognizability | distance to human |",
           "|---|---|---|---|---|---|---|"]
  for r in sorted(results, key=lambda r: r["distance_to_human"]):
    mark = " (closest)" if r.get("closest") else " (DIVERGED: not a trained model)" if r.get("diverged") else ""
    lines.append(f"| {r['name']}{mark} | {r['regularizer']} | {r['beta']:g} | "
                 f"{r['originality']:.3f} | {r['originality_norm']:.3f} | {r['recognizability']:.3f} | "
                 f"{r['distance_to_human']:.3f} |")
  path.write_text("\n".join(lines) + "\n")


def _describe(critics: dict) -> str:
  if critics["kind"] == "torch":
    return f"the published PyTorch critics ({critics['recognizer']}, {critics['featurizer']})"
  return f"trained by ldm_jax ({critics['workdir']})"


def write_regularizer_grid(path: pathlib.Path, results: list[dict], sets: dict, classes: int, rows: int) -> None:
  """Fig. 2 layout: the exemplars, then for humans, the non-regularised LDM and each regularizer's model closest
  to humans, `rows` samples per class (one block of rows per model)."""
  chosen = [r for r in results if r["kind"] == "human" or r.get("closest")
            or (r["kind"] == "ldm" and r["regularizer"] == "none") or r["kind"] == "pixel"]
  first = sets[chosen[0]["name"]]
  grid, labels = [first["exemplars"][:classes] / 255.0], ["exemplar"]
  for r in chosen:
    images = sets[r["name"]]["images"][:classes]
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    for j in range(min(rows, images.shape[1])):
      grid.append(images[:, j] / scale)
      labels.append(r["name"] if j == 0 else "")
  figures.write_grid(path, grid, labels)


def importance_study(cfg, out: pathlib.Path, models: list[dict]) -> dict[str, Any]:
  """Fig. 5: for every latent model, one map per ClickMe-QuickDraw category, φ averaged over `variations` samples
  conditioned on the category's exemplar (its most central drawing, as the data layer picks exemplars), against the
  human click maps (Spearman per category); the human split-half consistency; pairwise one-sided Wilcoxon tests;
  overlays (5a) and the bar plot (5b)."""
  ic = cfg.importance
  dc = cfg.data
  click = data_lib.load_split(ml_collections.ConfigDict({"data": {**dc.to_dict(), "name": "clickme"}}), "all")
  labels = np.asarray(click["labels"])
  keep = np.flatnonzero(labels < ic.categories) if ic.categories else np.arange(len(labels))
  labels = labels[keep]
  cats, human = importance.category_means(np.asarray(click["heatmap"])[keep], labels)
  _, half_a = importance.category_means(np.asarray(click["heatmap_half_a"])[keep], labels)
  _, half_b = importance.category_means(np.asarray(click["heatmap_half_b"])[keep], labels)
  consistency = np.asarray(importance.spearman(jnp.asarray(half_a), jnp.asarray(half_b)))
  exemplar_rows = np.asarray(click["exemplar_index"])[cats]        # one exemplar per category (Eq. 9's y)
  exemplars = np.asarray(click["images"])[exemplar_rows]
  chosen = [m for m in models if m["kind"] == "ldm"
            and (ic.models == "all" or m.get("closest") or m["regularizer"] == "none")
            and not m["regularizer"].startswith("vq")]   # VQ's quantiser has no useful Jacobian (paper §5.2)
  per_call = max(1, ic.batch // ic.variations)
  correlations, maps = {}, {}
  for m in chosen:
    model, _ = ldm_lib.load(m["path"])
    phi = []
    for start in range(0, len(cats), per_call):
      p, _ = importance.ldm_importance_maps(model, jnp.asarray(exemplars[start:start + per_call]),
                                            jax.random.fold_in(jax.random.PRNGKey(ic.seed), start),
                                            ic.guidance, weighting=ic.weighting, jacobian_at=ic.jacobian_at,
                                            variations=ic.variations)
      phi.append(np.asarray(p))
    maps[m["name"]] = np.concatenate(phi)
    correlations[m["name"]] = np.asarray(importance.spearman(jnp.asarray(maps[m["name"]]), jnp.asarray(human)))
    log.info("importance %s: Spearman with humans %.3f ± %.3f", m["name"], correlations[m["name"]].mean(),
             correlations[m["name"]].std())
  names = [str(c) for c in np.asarray(click["category"])[exemplar_rows]]
  baseline = next((m["name"] for m in chosen if m["regularizer"] == "none"), None)
  result = {"categories": names, "exemplar_rows": exemplar_rows.tolist(), "variations": ic.variations,
            "jacobian_at": ic.jacobian_at, "weighting": ic.weighting, "baseline": baseline,
            "human_consistency": float(consistency.mean()),
            "human_consistency_per_category": consistency.tolist(),
            "spearman": {k: {"mean": float(v.mean()), "std": float(v.std()), "per_category": v.tolist()}
                         for k, v in correlations.items()},
            "wilcoxon_greater": importance.wilcoxon_table(correlations) if len(correlations) > 1 else {}}
  if maps:
    figures.write_importance_overlays(out / "importance_maps.png", exemplars / 255.0, {"humans": human, **maps},
                                      names)
    figures.write_importance_bars(out / "importance_spearman.png", result["spearman"], result["human_consistency"],
                                  result["wilcoxon_greater"], baseline)
  (out / "importance.json").write_text(json.dumps(result, indent=1))
  return result


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str, resume: bool = False) -> dict[str, Any]:
  ec = cfg.eval
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  if not ec.ldm_workdirs and not ec.sample_files:
    raise ValueError("nothing to evaluate: set evaluate.ldm_workdirs and/or evaluate.sample_files")
  if ec.critics_torch:   # the authors' published critics, read from their PyTorch files
    if len(ec.critics_torch) != 2:
      raise ValueError("eval.critics_torch takes two files: (ProtoNet .pt, SimCLR .pt)")
    judges = judge.load_torch_judges(*ec.critics_torch)
    critics_used = {"kind": "torch", "recognizer": str(ec.critics_torch[0]), "featurizer": str(ec.critics_torch[1])}
  else:
    judges = judge.load_judges(ec.critics_workdir)
    critics_used = {"kind": "ldm_jax", "workdir": str(ec.critics_workdir)}
  models = discover_models(ec.ldm_workdirs)
  test = data_lib.load_split(cfg, cfg.data.eval_split)
  human_images, exemplars = judge.human_set(test, ec.human_per_class, ec.max_classes)
  key = jax.random.PRNGKey(ec.seed)
  score = lambda images, ex: judge.score_set(judges, images, ex, key, ec.n_way, ec.tasks_per_class, ec.bins)

  # Every set is generated (or read) and checked before any is scored: one bad set stops the evaluation whole.
  entries = [{"name": "humans", "kind": "human", "regularizer": "", "beta": 0.0}]
  sets = {"humans": {"images": human_images, "exemplars": exemplars}}
  files = [{"name": pathlib.Path(p).stem, "kind": "samples", "regularizer": "", "beta": 0.0, "path": str(p)}
           for p in ec.sample_files]
  for f in files:
    sets[f["name"]] = load_sample_file(f["path"])
    judge.check_set(f["name"], sets[f["name"]]["images"], sets[f["name"]]["exemplars"])
  for m in models:
    sets[m["name"]] = generate_set(m, exemplars, ec, out / "samples" / f"{_safe(m['name'])}.npz")
    judge.check_set(m["name"], sets[m["name"]]["images"], sets[m["name"]]["exemplars"])
  entries += models + files
  results = [{**e, **score(sets[e["name"]]["images"], sets[e["name"]]["exemplars"])} for e in entries]
  for r in results:
    r["per_class_originality"] = r.pop("originality").mean(1)
    r["per_class_recognizability"] = r.pop("recognizability").mean(1)
    r["originality"], r["recognizability"] = r.pop("originality_mean"), r.pop("recognizability_mean")
  place_points(results)
  write_figures(out, results, cfg.data.name)
  write_table(out / "table.md", results, critics_used)
  for name, s in sets.items():
    grid = [s["exemplars"][: ec.grid_classes] / 255.0] + [
        s["images"][: ec.grid_classes, j] / (255.0 if s["images"].dtype == np.uint8 else 1.0)
        for j in range(min(ec.grid_rows, s["images"].shape[1]))]
    figures.write_grid(out / f"samples_{_safe(name)}.png", grid, ["exemplar"] + [""] * (len(grid) - 1), title=name)
  write_regularizer_grid(out / "samples_by_regularizer.png", results, sets, ec.grid_classes, ec.grid_rows)
  summary = {"data": cfg.data.name, "critics": critics_used, "classes": int(len(exemplars)),
             "samples_per_class": ec.samples_per_class,
             "sampler": sampler_label(ec), "n_way": results[0]["n_way"], "points": [_jsonable(r) for r in results]}
  if cfg.importance.enabled:
    summary["importance"] = importance_study(cfg, out, results)
  (out / "scores.json").write_text(json.dumps(summary, indent=1))
  for r in sorted(results, key=lambda r: r["distance_to_human"]):
    log.info("%-28s originality %.3f (norm. %.3f)  recognizability %.3f  distance to human %.3f", r["name"],
             r["originality"], r["originality_norm"], r["recognizability"], r["distance_to_human"])
  return summary


def _jsonable(r: dict) -> dict:
  return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
