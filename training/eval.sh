#!/usr/bin/env bash
# npm run eval -- --dataset DIR --out FILE   (or --synthetic [--fast]); see training/automr/pipeline.py
set -euo pipefail
cd "$(dirname "$0")"
# Relative --dataset/--out paths are meant from the repository root, where npm runs scripts.
args=()
for a in "$@"; do
  if [[ "${prev:-}" =~ ^--(dataset|out|cache|write-synthetic-movielens)$ ]] && [[ "$a" != /* ]]; then
    a="$(cd .. && pwd)/$a"
  fi
  args+=("$a")
  prev="$a"
done
exec /usr/bin/python3 -m automr.pipeline "${args[@]}"
