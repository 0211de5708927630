#!/usr/bin/env bash
# Installs whatever is missing for soco-train, then builds it. Idempotent and quick when nothing
# changed: `npm test` and `npm run demo` call it first, so both work on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Debian's CPU LibTorch, Gloo headers for c10d, image codecs, the Python
# reference stack the tests and benchmarks compare against, and python3-venv for the virtualenvs
# (TensorBoard's reader below; the PyTorch 2.x lane's, scripts/torch2.sh, which runs this first).
APT_PACKAGES=(cmake g++ libtorch-dev libgloo-dev libjpeg-dev libpng-dev libwebp-dev libdeflate-dev
  python3-torch python3-torchvision python3-skimage python3-opencv python3-pil python3-yaml python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# TensorBoard's own event reader, which the tests read OUT/tb back with: a virtualenv outside the
# clone (shared by clones and worktrees), rebuilt only when the pinned version changes.
TENSORBOARD_VERSION=2.20.0
tb_venv="${XDG_CACHE_HOME:-$HOME/.cache}/soco-train/tensorboard"
if [ "$(cat "$tb_venv/.version" 2>/dev/null)" != "$TENSORBOARD_VERSION" ]; then
  echo "setup: TensorBoard $TENSORBOARD_VERSION reader in $tb_venv"
  rm -rf "$tb_venv"
  /usr/bin/python3 -m venv "$tb_venv"
  "$tb_venv/bin/pip" install -q --disable-pip-version-check "tensorboard==$TENSORBOARD_VERSION"
  echo "$TENSORBOARD_VERSION" > "$tb_venv/.version"
fi

# npm packages; `npm ci` also compiles the addon (install script) and the TypeScript (prepare).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
else
  # Incremental rebuilds: only changed sources recompile.
  if [ -f build/CMakeCache.txt ]; then npx cmake-js build --log-level warn; else npx cmake-js compile --log-level warn; fi
  npx tsc -p tsconfig.json
fi
