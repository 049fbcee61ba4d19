#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. This is the command CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The optional Ray extra, so that tests/test_ray_executor.py runs instead of being skipped
# (install ~7 s, the Ray tests ~30 s on 2 cores); setup.sh itself stays without Ray.
.venv/bin/python -m pip install -q -e ".[dev,ray]"
# Static checks first (ruff, ruff format, mypy, import contracts): a lint failure fails CI.
bash scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
