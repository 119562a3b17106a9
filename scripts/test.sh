#!/usr/bin/env bash
# Check the import layers, then run the whole test suite (slow end-to-end tests included). Sets up the venv
# first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python tests/preflight.py  # in CI: missing shipped data stops here, in a second, with one line
export GENREFUSION_CACHE=${GENREFUSION_CACHE:-$PWD/.cache/test-features}
lint-imports --no-cache  # the layer contract in pyproject.toml: no upward import, no cycle
python -m pytest -q -p no:cacheprovider "$@"
