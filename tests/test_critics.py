"""The Conv4 critic and the import of PyTorch state dicts, against a forward pass written in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldm_jax.models.critics import Conv4Critic, import_torch_state_dict


def _torch_like_state_dict(head: str, seed: int = 0) -> dict:
  """A ProtoNet / ImageEmbedding state dict with PyTorch's names and shapes (OIHW convs, [out, in] linears)."""
  rng = np.random.default_rng(seed)
  sd, cin = {}, 1
  for i in range(4):
    sd[f"embedding.{i}.0.weight"] = rng.normal(0, 0.3, (64, cin, 3, 3)).astype(np.float32)
    sd[f"embedding.{i}.0.bias"] = rng.normal(0, 0.1, 64).astype(np.float32)
    sd[f"embedding.{i}.1.weight"] = rng.uniform(0.5, 1.5, 64).astype(np.float32)
    sd[f"embedding.{i}.1.bias"] = rng.normal(0, 0.1, 64).astype(np.float32)
    sd[f"embedding.{i}.1.running_mean"] = rng.normal(0, 0.2, 64).astype(np.float32)
    sd[f"embedding.{i}.1.running_var"] = rng.uniform(0.5, 2.0, 64).astype(np.float32)
    sd[f"embedding.{i}.1.num_batches_tracked"] = np.array(100)
    cin = 64
  sd["embedding.6.weight"] = rng.normal(0, 0.05, (256, 576)).astype(np.float32)
  sd["embedding.6.bias"] = rng.normal(0, 0.1, 256).astype(np.float32)
  prefix = "metric_layer" if head == "metric" else "projection.0"
  sd[f"{prefix}.weight"] = rng.normal(0, 0.05, (128, 256)).astype(np.float32)
  sd[f"{prefix}.bias"] = rng.normal(0, 0.1, 128).astype(np.float32)
  return sd


def _numpy_forward(sd: dict, head_prefix: str, x_nchw: np.ndarray):
  """PyTorch semantics, written out: conv (cross-correlation, pad 1) → BN (eval) → ReLU → 2×2 max pool."""
  x = x_nchw.astype(np.float64)
  for i in range(4):
    w, b = sd[f"embedding.{i}.0.weight"], sd[f"embedding.{i}.0.bias"]
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for di in range(3):
      for dj in range(3):
        out += np.einsum("nchw,oc->nohw", xp[:, :, di:di + h, dj:dj + wd], w[:, :, di, dj])
    out += b[None, :, None, None]
    g, beta = sd[f"embedding.{i}.1.weight"], sd[f"embedding.{i}.1.bias"]
    mu, var = sd[f"embedding.{i}.1.running_mean"], sd[f"embedding.{i}.1.running_var"]
    out = (out - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) * g[None, :, None, None] + \
        beta[None, :, None, None]
    out = np.maximum(out, 0)
    h2, w2 = h // 2, wd // 2
    x = out[:, :, :2 * h2, :2 * w2].reshape(n, -1, h2, 2, w2, 2).max(axis=(3, 5))
  flat = np.maximum(x.reshape(x.shape[0], -1), 0)
  features = flat @ sd["embedding.6.weight"].T + sd["embedding.6.bias"]
  return features, features @ sd[f"{head_prefix}.weight"].T + sd[f"{head_prefix}.bias"]


@pytest.mark.parametrize("head,prefix", [("metric", "metric_layer"), ("projection", "projection.0")])
def test_imported_state_dict_matches_numpy_reference(head, prefix):
  sd = _torch_like_state_dict(head)
  variables, got_head = import_torch_state_dict(sd)
  assert got_head == head
  x = np.random.default_rng(1).uniform(0, 1, (3, 1, 50, 50)).astype(np.float32)
  want_f, want_h = _numpy_forward(sd, prefix, x)
  f, h = Conv4Critic(head=head).apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), False)
  np.testing.assert_allclose(f, want_f, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(h, want_h, rtol=2e-4, atol=2e-4)


def test_import_refuses_a_state_dict_without_a_known_head():
  sd = _torch_like_state_dict("metric")
  del sd["metric_layer.weight"], sd["metric_layer.bias"]
  with pytest.raises(KeyError, match="metric_layer"):
    import_torch_state_dict(sd)


def test_critic_shapes_and_parameter_layout():
  model = Conv4Critic(head="projection")
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 50, 50, 1)), False)
  f, h = model.apply(variables, jnp.zeros((2, 50, 50, 1)), False)
  assert f.shape == (2, 256) and h.shape == (2, 128)
  assert variables["params"]["features"]["kernel"].shape == (576, 256)
  imported, _ = import_torch_state_dict(_torch_like_state_dict("projection"))
  assert jax.tree.structure(imported) == jax.tree.structure(
      {"params": variables["params"], "batch_stats": variables["batch_stats"]})


@pytest.mark.real_data
def test_tiny_critics_train_on_omniglot_and_recognize_real_test_drawings(tmp_path):
  import json
  from conftest import run_main
  from ldm_jax.eval import scores
  from ldm_jax.train import critics
  out = run_main("--config=configs/critics.py:omniglot,tiny", f"--workdir={tmp_path}")
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  for name in ("protonet", "simclr"):
    assert summary[name]["loss_last_epoch"] < summary[name]["loss_first_epoch"], summary
  assert summary["protonet"]["human_recognizability"] > 0.2          # 20-way chance is 0.05
  model, variables = critics.load(tmp_path, "simclr")
  from ldm_jax import data
  test = data.load("omniglot", "paper_test", image_size=50)
  feats = critics.embed_fn(model, head=False)(variables, jnp.asarray(test["images"][:40]))
  assert feats.shape == (40, 256)
  ori = scores.originality(jnp.stack([feats[:20], feats[:20] + 0.5]), jnp.stack([feats[:20][0], feats[:20][0]]))
  assert ori.shape == (2, 20) and float(ori[0, 0]) == 0.0
