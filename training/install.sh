#!/usr/bin/env bash
# Installs what training/ needs on a Debian machine (idempotent; quick when everything is present).
# Debian's torch needs OpenBLAS: without libopenblas0-pthread a small transformer runs ~9x slower.
set -euo pipefail
PKGS=(python3-torch python3-numpy python3-scipy python3-onnx python3-pytest python3-tqdm python3-matplotlib libopenblas0-pthread)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
/usr/bin/python3 -c "import torch, numpy, scipy, onnx, pytest, tqdm, matplotlib; print('training deps ok: torch', torch.__version__)"
