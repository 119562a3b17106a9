#!/usr/bin/env bash
# Run the whole test suite (slow end-to-end tests included). Sets up the venv first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export GENREFUSION_CACHE=${GENREFUSION_CACHE:-$PWD/.cache/test-features}
python -m pytest -q -p no:cacheprovider "$@"
