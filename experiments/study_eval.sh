#!/usr/bin/env bash
# A small end-to-end originality-vs-recognizability study on real data (issue 5's real run):
#   RAE sweep (prototype β ∈ BETAS, β = 0 is the non-regularised model) → one latent DDPM per RAE (one program)
#   → the two critics → the evaluate job (human point, every LDM, Fig. 3-style plot; on QuickDraw also the
#   feature-importance study against the ClickMe-QuickDraw human maps).
# Usage: experiments/study_eval.sh omniglot|quickdraw WORKDIR
# Env: RAE_EPOCHS, LDM_EPOCHS, CRITIC_EPOCHS, UNET (paper|small), BETAS ('(0.,1.,10.)'), SAMPLES (per class), and
# extra overrides per stage: RAE_ARGS, LDM_ARGS, CRITIC_ARGS, EVAL_ARGS (e.g. EVAL_ARGS=--config.eval.max_classes=50).
# Every stage resumes: re-running the same command after an interruption continues where it stopped.
set -euo pipefail
DATASET=${1:?dataset}; WORK=${2:?workdir}
PY=${PY:-python}
RAE_EPOCHS=${RAE_EPOCHS:-20}; LDM_EPOCHS=${LDM_EPOCHS:-40}; CRITIC_EPOCHS=${CRITIC_EPOCHS:-15}
UNET=${UNET:-paper}; BETAS=${BETAS:-'(0.,1.,10.)'}; SAMPLES=${SAMPLES:-30}
resume() { [ -d "$1/checkpoints" ] && echo --resume || true; }
done_() { [ -f "$1/summary.json" ]; }

done_ "$WORK/rae" || $PY -m ldm_jax.main --config=configs/rae.py:$DATASET --workdir="$WORK/rae" $(resume "$WORK/rae") \
  --config.sweep.betas="$BETAS" --config.train.epochs=$RAE_EPOCHS --config.train.lr=1e-3 \
  --config.train.lr_decay_every_epochs=0 ${RAE_ARGS:-}
done_ "$WORK/ldm" || $PY -m ldm_jax.main --config=configs/ldm.py:$DATASET,unet=$UNET --workdir="$WORK/ldm" \
  $(resume "$WORK/ldm") --config.ldm.rae_workdir="$WORK/rae" --config.train.epochs=$LDM_EPOCHS \
  --config.train.lr=3e-4 --config.train.lr_decay_every_epochs=0 ${LDM_ARGS:-}
[ -f "$WORK/critics/protonet/critic.json" ] && [ -f "$WORK/critics/simclr/critic.json" ] || \
  $PY -m ldm_jax.main --config=configs/critics.py:$DATASET --workdir="$WORK/critics" \
  $( [ -d "$WORK/critics" ] && echo --resume ) --config.train.epochs=$CRITIC_EPOCHS ${CRITIC_ARGS:-}
IMPORTANCE=$([ "$DATASET" = quickdraw ] && echo True || echo False)
$PY -m ldm_jax.main --config=configs/evaluate.py:$DATASET --workdir="$WORK/eval" \
  --config.eval.critics_workdir="$WORK/critics" --config.eval.ldm_workdirs="('$WORK/ldm',)" \
  --config.eval.samples_per_class=$SAMPLES --config.importance.enabled=$IMPORTANCE \
  --config.importance.models=all ${EVAL_ARGS:-}
