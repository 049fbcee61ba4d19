#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. This is the command CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The optional Ray and MLflow extras, so that tests/test_ray_executor.py and
# tests/test_mlflow_tracking.py run instead of being skipped (Ray ~7 s to install; mlflow-skinny
# ~2 min on a loaded 2-core machine, once, then a no-op); setup.sh itself stays without them.
.venv/bin/python -m pip install -q -e ".[dev,ray,mlflow]"
# Headless Chromium for the console's browser tests (apt-get when root; skipped otherwise).
bash scripts/install_browser.sh
# Static checks first (ruff, ruff format, mypy, import contracts): a lint failure fails CI.
bash scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
