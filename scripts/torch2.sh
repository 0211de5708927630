#!/usr/bin/env bash
# The PyTorch 2.x lane: PyPI's torch (a CUDA build with NCCL, which also runs on the CPU) and its
# torchvision, in a virtualenv cached per version outside the clone, and the addon built against
# it in its own folder (build-torch2/), beside the Debian build in build/.
#
#   bash scripts/torch2.sh              provision (once; then quick) and build; prints the lane's env
#   bash scripts/torch2.sh CMD ARGS...  the same, then runs CMD with the lane's env, e.g.
#       bash scripts/torch2.sh npx mocha                  the whole suite against torch 2.x
#       bash scripts/torch2.sh npm run bench -- conv2d    a benchmark against the same torch in Python
#
# The lane's env: SOCO_TORCH (the build takes this LibTorch), SOCO_BUILD_DIR (the addon loads from
# there) and SOCO_PYTHON (the tests' and benchmarks' Python references run this torch).
set -euo pipefail
cd "$(dirname "$0")/.."

# One pair pip serves, with CUDA 13 (what the lent GPU machines hold). cuda-toolkit's crt and cccl
# extras are the CUDA headers the build needs beyond the wheel's own dependencies (no nvcc).
TORCH=2.11.0
TORCHVISION=0.26.0
CUDA_TOOLKIT=13.0.2
VENV=${SOCO_TORCH2_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/soco-train/torch-$TORCH-cu130}
BUILD_DIR=build-torch2

provision() {
  mkdir -p "$(dirname "$VENV")"
  # One provisioner at a time per machine; a venv without its stamp is a half-finished one.
  exec 9>"$VENV.lock"
  flock 9
  if [ ! -f "$VENV/.soco-complete" ]; then
    echo "torch2: provisioning torch $TORCH + torchvision $TORCHVISION (CUDA 13, ~4.5 GB) into $VENV"
    local t0=$SECONDS
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    # --no-cache-dir: the venv is the cache; pip's own copy of the wheels would double the 4.5 GB.
    "$VENV/bin/pip" install --quiet --progress-bar off --no-input --no-cache-dir \
      "torch==$TORCH" "torchvision==$TORCHVISION" "cuda-toolkit[crt,cccl]==$CUDA_TOOLKIT"
    touch "$VENV/.soco-complete"
    echo "torch2: provisioned in $((SECONDS - t0)) s"
  fi
  exec 9>&-
}

# The machine's part (apt, npm ci, the TypeScript) is the Debian lane's setup; quick once done.
bash scripts/setup.sh
provision
export SOCO_TORCH=$VENV/bin/python3 SOCO_BUILD_DIR=$BUILD_DIR SOCO_PYTHON=$VENV/bin/python3
# Incremental after the first build; `compile` (re)configures, which picks the LibTorch.
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
  npx cmake-js build --out "$BUILD_DIR" --log-level warn
else
  npx cmake-js compile --out "$BUILD_DIR" --log-level warn
fi
if (($#)); then
  exec "$@"
fi
echo "SOCO_TORCH=$SOCO_TORCH SOCO_BUILD_DIR=$SOCO_BUILD_DIR SOCO_PYTHON=$SOCO_PYTHON"
