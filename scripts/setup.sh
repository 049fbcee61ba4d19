#!/usr/bin/env bash
# Create .venv and install YoopRL with its dev tools. Idempotent: re-running is cheap.
#
# torch goes in first, on its own, so that pip never resolves it through another package
# (which would pull a multi-GB CUDA build). Override TORCH_SPEC for your machine, e.g.
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  "$PY" -m pip install -q $TORCH_SPEC
fi
"$PY" -m pip install -q -e ".[dev]"
"$PY" -c "import backend, torch, stable_baselines3, gymnasium; print('yooprl ready: torch', torch.__version__, '| sb3', stable_baselines3.__version__, '| gymnasium', gymnasium.__version__)"
