#!/usr/bin/env bash
# The static checks CI runs before the tests (scripts/run_tests.sh calls this): ruff lint,
# ruff format, mypy on backend/ and the import-layer contracts. Tool versions are pinned in
# pyproject.toml's dev extra, so a developer's run and CI's agree.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"

echo "lint: ruff check"
"$BIN/ruff" check .
echo "lint: ruff format --check"
"$BIN/ruff" format --check .
echo "lint: mypy (backend/, settings in pyproject.toml [tool.mypy])"
"$BIN/mypy"
echo "lint: lint-imports (contracts in pyproject.toml [tool.importlinter])"
"$BIN/lint-imports"
