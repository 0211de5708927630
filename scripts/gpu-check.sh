#!/usr/bin/env bash
# The CUDA check (issue 8), in two halves:
#
#   bash scripts/gpu-check.sh prepare   # here, on the Debian build machine: fills .gpu/ (ignored)
#   bash scripts/gpu-check.sh run       # on the CUDA machine, in a copy of the tree with .gpu/
#
# `prepare` packs what the CUDA machine lacks: a Node binary (xz), the runtime node_modules plus
# mocha (no TypeScript: the compiled dist/ travels), the JPEG/PNG/WebP and Gloo development packages, and
# the CUDA header wheels the PyTorch 2.x lane builds with (scripts/torch2.sh's cuda-toolkit pin).
# `run` builds the addon as that lane does (scripts/libtorch.js with SOCO_TORCH = the machine's
# PyTorch, TORCH_PY, default /opt/torch/.venv; into build-torch2/; SOCO_PYTHON the same Python),
# runs the test suite with every op test also on cuda:0, a few SoCo training iterations on the
# GPU under bf16 autocast, and `soco-step-cuda` against the PyTorch reference, then prints one
# table. Logs and the table go to $OUT (the device tool's folder) or .gpu/out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
G=$ROOT/.gpu

prepare() {
  rm -rf "$G" && mkdir -p "$G/debs"
  npx tsc -p tsconfig.json
  xz -T2 -6 -c "$(command -v node)" > "$G/node.xz"
  # Runtime dependencies and mocha, from the lockfile, without TypeScript or the build tools' extras.
  local stage
  stage=$(mktemp -d)
  cp package.json package-lock.json "$stage/"
  (cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null && \
    npm install --no-save --ignore-scripts --no-audit --no-fund "mocha@$(node -p "require('$ROOT/package.json').devDependencies.mocha")" >/dev/null)
  tar -C "$stage" -cJf "$G/node_modules.tar.xz" node_modules
  rm -rf "$stage"
  (cd "$G/debs" && apt-get download libjpeg62-turbo-dev libjpeg62-turbo libpng-dev libpng16-16 libwebp-dev libwebp7 \
    libwebpdemux2 libwebpmux3 zlib1g-dev libdeflate-dev libdeflate0 libgloo-dev >/dev/null)
  # The lent machines hold the lane's torch (CUDA 13); its wheel lacks these headers.
  python3 -m pip download --quiet --dest "$G/wheels" "cuda-toolkit[crt,cccl]==$(sed -n 's/^CUDA_TOOLKIT=//p' scripts/torch2.sh)"
  du -sh "$G" dist
  cat <<EOF
Prepared .gpu/ ($(du -sh "$G" | cut -f1)). On the device tool:
  run(command: "bash scripts/gpu-check.sh run", carry: [".gpu", "dist"], timeout_s: 540)
EOF
}

run() {
  local out=${OUT:-$G/out}
  mkdir -p "$out" /tmp/soco-node/bin /tmp/soco-sysroot
  exec > >(tee "$out/gpu-check.log") 2>&1
  local t0=$SECONDS
  xz -dc "$G/node.xz" > /tmp/soco-node/bin/node && chmod +x /tmp/soco-node/bin/node
  export PATH=/tmp/soco-node/bin:$PATH
  [ -d node_modules ] || tar -xJf "$G/node_modules.tar.xz"
  for f in "$G"/debs/*.deb; do dpkg -x "$f" /tmp/soco-sysroot; done
  local sys=/tmp/soco-sysroot/usr
  export CPATH=$sys/include:$sys/include/x86_64-linux-gnu${CPATH:+:$CPATH}
  export LIBRARY_PATH=$sys/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$sys/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

  local py=${TORCH_PY:-/opt/torch/.venv/bin/python3}
  "$py" -m pip install --quiet --no-index --find-links "$G/wheels" "cuda-toolkit[crt,cccl]" || \
    echo "could not add the CUDA header wheels to $py: the build may name what is missing"
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  # The PyTorch 2.x lane's environment (scripts/torch2.sh), with this machine's PyTorch.
  export SOCO_TORCH=$py SOCO_BUILD_DIR=build-torch2 SOCO_PYTHON=$py

  echo "== build"
  local tb=$SECONDS
  node node_modules/cmake-js/bin/cmake-js compile --out build-torch2 --CDCMAKE_PREFIX_PATH="$sys" \
    --CDJPEG_INCLUDE_DIR="$sys/include" --CDPNG_PNG_INCLUDE_DIR="$sys/include" --CDWEBP_INCLUDE_DIR="$sys/include"
  local build_s=$((SECONDS - tb))
  node -e "const t=require('./dist/lib/torch'); if(!t.cuda.isAvailable()) {console.error('the addon sees no CUDA device'); process.exit(1)} console.log('addon:', JSON.stringify(t.buildInfo()), 'cuda devices', t.cuda.deviceCount())"

  echo "== tests (CUDA rows included where the suite has them)"
  local tt=$SECONDS
  set +e
  node node_modules/mocha/bin/mocha.js --no-config --timeout 600000 --reporter dot \
    dist/test/build_info.test.js dist/test/torch_ops.test.js dist/test/torch_errors.test.js dist/test/torch_memory.test.js dist/test/nn.test.js \
    dist/test/model.test.js dist/test/amp.test.js dist/test/train_step.test.js dist/test/dist.test.js 2>&1 | tee "$out/tests.log"
  local tests_rc=${PIPESTATUS[0]}
  set -e
  local tests_s=$((SECONDS - tt))

  echo "== SoCo training on the GPU (bf16 autocast)"
  local run=/tmp/soco-gpu-run tr=$SECONDS
  rm -rf "$run"
  node bin/soco-train.js proposals generate --images test/fixtures/images/train --out "$run/train.store" --workers 8
  node bin/soco-train.js train --images test/fixtures/images/train --proposals "$run/train.store" --out "$run/out" \
    --device cuda --precision bf16 --batch-size 8 --max-iters 10 --log-every 1 --no-resume
  local train_s=$((SECONDS - tr))
  cp "$run/out/metrics.jsonl" "$out/" 2>/dev/null || true

  echo "== bench"
  node dist/bench/index.js soco-step-cuda --device cuda | tee "$out/bench.log"

  {
    echo "| step | result |"
    echo "| --- | --- |"
    echo "| GPU | $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) |"
    echo "| torch | $("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') |"
    echo "| build | ${build_s} s |"
    echo "| tests | $(grep -Eo '[0-9]+ passing' "$out/tests.log" | tail -1), $(grep -Eo '[0-9]+ failing' "$out/tests.log" | tail -1 || echo '0 failing') (${tests_s} s) |"
    echo "| training, 10 iterations batch 8 bf16 | ${train_s} s, last loss $(tail -1 "$out/metrics.jsonl" | node -p 'JSON.parse(require("fs").readFileSync(0,"utf8")).loss') |"
    echo "| $(grep '^bench: ' "$out/bench.log" | sed 's/^bench: //') |"
    echo "| total | $((SECONDS - t0)) s |"
  } | tee "$out/table.md"
  return "$tests_rc"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
