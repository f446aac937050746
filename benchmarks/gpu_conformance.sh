#!/usr/bin/env bash
# Real-code conformance on a CUDA GPU: tests/test_conformance.py with every model, both reference
# loops and ours on the GPU (fp32), plus the CLI and the app on the tiny LLaDA folder; then
# tests/test_diffusers_scheduler.py: our schedulers inside diffusers' LLaDA2Pipeline on the GPU.
# No weights are downloaded: the tests build tiny random-weight LLaDA / Dream folders from the
# real model code. See docs/GPU.md.
#
#   benchmarks/gpu_conformance.sh [FAST_DLLM_DIR] [extra pytest args...]
#
# FAST_DLLM_DIR holds NVlabs/Fast-dLLM's llada/ and dream/ folders (default: $UNMASKER_FAST_DLLM,
# else ../shared/thirdparty/fast-dllm). Results: runs/gpu/conformance.xml (JUnit) and the summary
# printed at the end. Takes a few minutes; most of it is pytest start-up and the app test.
set -euo pipefail
cd "$(dirname "$0")/.."
FAST_DLLM="${1:-${UNMASKER_FAST_DLLM:-../shared/thirdparty/fast-dllm}}"
shift || true
if [ ! -d "$FAST_DLLM/llada/model" ] || [ ! -d "$FAST_DLLM/dream/model" ]; then
    echo "error: no Fast-dLLM llada/model and dream/model under $FAST_DLLM" >&2
    exit 2
fi
python - <<'PY'
import torch, transformers
assert torch.cuda.is_available(), "no CUDA device visible"
print(f"{torch.cuda.get_device_name(0)}  torch {torch.__version__}  transformers {transformers.__version__}")
PY
mkdir -p runs/gpu
export UNMASKER_FAST_DLLM="$FAST_DLLM" UNMASKER_TEST_DEVICE=cuda HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest -q -rs tests/test_conformance.py tests/test_diffusers_scheduler.py --durations=10 --junitxml=runs/gpu/conformance.xml "$@"
