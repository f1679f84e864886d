#!/usr/bin/env bash
# One lent-GPU session's measurements, in priority order, each bounded by its own timeout so one slow part cannot
# cost the rest. JSON lines go to $OUT/gpu.jsonl (and stdout), logs to $OUT/*.log; a summary table prints last.
#
#   OUT=/tmp/out bash experiments/gpu_session.sh
#
# On a machine without this project's dependencies, carried wheels in .whl/ are installed first, and the data may
# come as a copy in .gpu/data (raw archives) and .gpu/tfds (the prepared TFDS build), both git-ignored.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >"$OUT/pip.log" 2>&1 || { echo "wheel install failed"; tail -5 "$OUT/pip.log"; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
[ -d .gpu/data ] && export LDM_JAX_DATA_DIR=$PWD/.gpu/data
[ -d .gpu/tfds ] && export LDM_JAX_BUILD_DIR=$PWD/.gpu/tfds
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PY:-python3}

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv,noheader || true
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" || exit 1

part() {  # part NAME SECONDS command...: run, keep the JSON lines, note a timeout or failure as a line too
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep '^{"bench"' "$OUT/$name.log" | tee -a "$OUT/gpu.jsonl"
  echo "# $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$OUT/parts.txt"
  [ $rc -ne 0 ] && tail -4 "$OUT/$name.log"
}

# Sessions' parts (earlier ones: git log -p of this file). 2026-12-04, third call: the RAE sweeps with 'auto'
# (now GEMM convolutions on a GPU) and the critics per convolution, which 'auto' leaves on space-to-depth there.
part sweep_auto 130 $PY experiments/bench_rae.py --only sweep --sweeps plain --ks 4,8 --modes vmap --impls matmul
part critics 130 $PY experiments/bench_critics.py --impls s2d,matmul

$PY - "$OUT/gpu.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
  r = json.loads(line)
  print(f"{r['bench']:<36} {r['baseline_value']:>12,.1f} -> {r['candidate_value']:>12,.1f} {r['unit']:<22} "
        f"{r['ratio']:.3f}x  {r.get('xla_flags', '')}")
EOF
cat "$OUT/parts.txt"; grep -h "^#" "$OUT"/*.log
