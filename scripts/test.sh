#!/usr/bin/env bash
# The project's test command (npm test): static checks, the TypeScript suites, then the Python toolchain's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
if ! "$PY" -c 'import torch, onnx, numpy, pytest' 2>/dev/null; then
  echo "The training toolchain's Python packages are missing; installing them (training/install.sh)."
  bash training/install.sh
fi

echo "== typecheck"
npx tsc -p tsconfig.json --noEmit

echo "== lint"
npx eslint --max-warnings 0 .

echo "== proto: buf lint (STANDARD) and buf breaking against the frozen v1 API (proto-baseline/)"
npx buf lint
npx buf breaking --against proto-baseline/api-v1.json

echo "== TypeScript tests"
mapfile -t files < <(find test -name '*.test.ts' | sort)
node --import tsx --test --test-reporter=spec "${files[@]}"

echo "== Python tests (training/)"
(cd training && "$PY" -m pytest -q)
