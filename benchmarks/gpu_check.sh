#!/usr/bin/env bash
# One prepared GPU check for jparam (benchmarks/README.md, "GPU check").
#
#   bash benchmarks/gpu_check.sh            # on one H100/H200: about 7 minutes
#   bash benchmarks/gpu_check.sh --dry-run  # on CPU: every stage but install, tiny sizes;
#                                           # its JSON/summary stay in the printed work folder
#
# Stages, each under its own timeout, all inside an overall budget (BUDGET_S, default 450 s);
# a failing or timed-out stage is recorded and the next one runs:
#   1. install  only what the python lacks (GPU jax, CUDA torch, optax, pytest, xdist,
#               safetensors, hypothesis); the lent H200 image has them all and no network,
#               so there nothing runs. WHEELHOUSE=<dir> installs from local wheels only.
#   2. probe    versions, device name (the results' file name, e.g. nvidia-h200)
#   3. tests    parity tests that matter on a GPU: core loop, optimizers, layers, attention,
#               autocast and GradScaler, float32 with TF32 off (tests/conftest.py sets
#               jax_default_matmul_precision="highest"; NVIDIA_TF32_OVERRIDE=0 for the rest)
#   4. bench    GPU-sized GPT and CNN, then the small cases: pure JAX, jparam, jparam bf16
#               (interleaved in one process), then torch eager / bf16, then torch.compile
#   5. report   benchmarks/results/<gpu>.json (always written, whatever failed) and
#               benchmarks/results/<gpu>.md (summary, goals checked)
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
BUDGET_S=${BUDGET_S:-450}
T0=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
STAGES="$WORK/stages.tsv"
: > "$STAGES"
PY=${PYTHON:-python3}
RESULTS=$ROOT/benchmarks/results
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false      # several test workers share the GPU
export JAX_ENABLE_COMPILATION_CACHE=false

left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }

# stage NAME LIMIT_S CMD...: run CMD with a timeout of min(LIMIT_S, budget left - 20 s)
stage() {
    local name=$1 limit=$2; shift 2
    local budget=$(( $(left) - 20 ))
    [ "$budget" -lt "$limit" ] && limit=$budget
    if [ "$limit" -le 5 ]; then
        printf '%s\t%s\t%s\n' "$name" "skipped (no time left)" 0 >> "$STAGES"
        echo "[gpu_check] $name: skipped, budget spent"
        return 0
    fi
    echo "[gpu_check] $name (limit ${limit}s): $*"
    local s rc
    s=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - s ))" >> "$STAGES"
    tail -n 3 "$WORK/$name.log" | sed "s/^/[gpu_check]   /"
    echo
    return 0
}

report() {
    "$PY" "$ROOT/benchmarks/gpu_report.py" --work "$WORK" --dry-run "$DRY" --out-dir "$RESULTS" \
        || echo "[gpu_check] report failed; raw logs in $WORK"
}
trap report EXIT

# ------------------------------------------------------------------ 1. install
if [ "$DRY" = 1 ]; then
    CASES_BIG=${CASES_BIG:-mlp_small}; CASES_SMALL=${CASES_SMALL:-}
    ROUNDS=1; ROUND_S=0.01
    TESTS=${TESTS:-tests/test_amp_grad_scaler.py}
    TEST_WORKERS=${TEST_WORKERS:-1}
    RESULTS=$WORK                                # a dry run leaves benchmarks/results alone
else
    CASES_BIG=${CASES_BIG:-gpt_gpu cnn_gpu}; CASES_SMALL=${CASES_SMALL:-gpt cnn mlp_small}
    ROUNDS=${ROUNDS:-5}; ROUND_S=${ROUND_S:-0.2}
    RESULTS=$ROOT/benchmarks/results
    TESTS=${TESTS:-$(ls tests/test_core_*.py tests/test_autodiff.py tests/test_optim_*.py tests/test_layers_*.py \
        tests/test_attention.py tests/test_rnn.py tests/test_transformer.py tests/test_amp_*.py \
        tests/test_fast_paths.py \
        2>/dev/null | tr '\n' ' ')}
    # The lent H200 machine has no network but its python3 already holds torch (CUDA),
    # jax with its CUDA plugin, optax, pytest, pytest-xdist, safetensors and hypothesis: then
    # nothing is installed at all (jparam itself comes from PYTHONPATH, never pip -e, whose
    # build step would reach for the network). Only what is missing is installed: from
    # WHEELHOUSE alone (--no-index) when given, else from the index with a short timeout.
    PIP="$PY -m pip install --quiet --disable-pip-version-check --timeout 15 --retries 1"
    [ -n "${WHEELHOUSE:-}" ] && PIP="$PIP --no-index --find-links $WHEELHOUSE"
    install() {
        local missing
        missing=$("$PY" - <<'PYEOF'
import importlib
need = []
try:
    import jax
    if jax.devices()[0].platform != "gpu":
        need.append("jax[cuda12]")
except Exception:
    need.append("jax[cuda12]")
try:
    import torch
    if not torch.cuda.is_available():
        need.append("torch")
except Exception:
    need.append("torch")
for mod, pkg in (("optax", "optax"), ("numpy", "numpy"), ("pytest", "pytest"),
                 ("xdist", "pytest-xdist"), ("safetensors", "safetensors"),
                 ("hypothesis", "hypothesis")):
    try:
        importlib.import_module(mod)
    except Exception:
        need.append(pkg)
print(" ".join(need))
PYEOF
)
        if [ -z "$missing" ]; then
            echo "everything is installed already; nothing to do"
            return 0
        fi
        echo "missing: $missing"
        # shellcheck disable=SC2086
        $PIP -U $missing || echo "install of [$missing] failed"
    }
    export -f install
    export PY PIP
    stage install 200 bash -c install
fi

# ------------------------------------------------------------------ 2. probe
stage probe 60 "$PY" -c "
import json, jax, platform
d = jax.devices()[0]
info = {'python': platform.python_version(), 'jax': jax.__version__, 'platform': d.platform,
        'device_kind': d.device_kind, 'n_devices': jax.device_count()}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available(),
                torch_device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as e:
    info['torch'] = f'unavailable: {e}'
print('PROBE ' + json.dumps(info))
"

# ------------------------------------------------------------------ 3. parity tests
# shellcheck disable=SC2086
NVIDIA_TF32_OVERRIDE=0 stage tests 150 "$PY" -m pytest -v -n "${TEST_WORKERS:-8}" \
    -o addopts="" --junitxml="$WORK/junit.xml" $TESTS

# ------------------------------------------------------------------ 4. benchmarks
bench() {   # bench NAME LIMIT CASE FRAMEWORKS...
    local name=$1 limit=$2 case=$3; shift 3
    stage "$name" "$limit" "$PY" benchmarks/run.py --cases "$case" --frameworks "$@" \
        --rounds "$ROUNDS" --round-s "$ROUND_S" --no-first-step --no-readme \
        --out "$WORK/bench-$name"
}
for c in $CASES_BIG; do          # the GPU-sized cases first: the goals are checked on them
    bench "jax-$c" 100 "$c" jax jparam jparam_bf16
    bench "torch-$c" 60 "$c" torch torch_bf16
    bench "compile-$c" 120 "$c" torch_compile
done
for c in $CASES_SMALL; do
    bench "jax-$c" 60 "$c" jax jparam jparam_bf16
    bench "torch-$c" 40 "$c" torch torch_bf16
done
echo "[gpu_check] done in $(( $(date +%s) - T0 )) s; logs in $WORK"
