#!/usr/bin/env bash
# Regenerate constraints.txt from a venv whose test suite passed: every installed distribution at its
# exact version (genrefusion itself left out; torch's local "+cpu" label dropped, so the pin matches the
# CPU wheel and the default one alike). Usage: bash scripts/constraints.sh [VENV] (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
{
  echo "# The versions the test suite passed with (Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())')),"
  echo "# installed by scripts/setup.sh as: pip install -c constraints.txt ...  Regenerate: bash scripts/constraints.sh"
  "$VENV/bin/python" -m pip freeze --exclude-editable --all 2>/dev/null \
    | grep -v -i -E '^(genrefusion|pip|setuptools|wheel)==' | grep -v '^#' | grep -v '^-e ' \
    | sed -E 's/^(torch==[^+]*)\+.*/\1/' | LC_ALL=C sort -f
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins)"
