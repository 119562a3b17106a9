#!/usr/bin/env bash
# The main job: set up, then train + evaluate the poster, plot and fused models on every shipped
# dataset, writing metrics.json, plots and report.html under runs/demo.
# Shipped data: ../shared/datasets (override with GENREFUSION_DATA); feature cache: ~/.cache/genrefusion
# (override with GENREFUSION_CACHE). Extra arguments go to `genrefusion train` (e.g. --set train.epochs=10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
DATA=${GENREFUSION_DATA:-../shared/datasets}
OUT=${OUT:-runs/demo}
mapfile -t SETS < <(ls -d "$DATA"/*/ | sed 's:/$::')
# --resume: a re-run continues a killed run, or just reports a finished one
genrefusion train "${SETS[@]}" --out "$OUT" --resume "$@"
