#!/usr/bin/env bash
# GPU check of `genrefusion train --device cuda`: the default route (frozen backbones, cached features) and
# whole-backbone fine-tuning (train.finetune = "all"), a run killed mid-way and resumed, and predict from
# each bundle. Results in $OUT (default /tmp/gpu-check): summary.txt, one log per run.
#
#   bash benchmarks/gpu/check.sh ../shared/datasets/imdb_top250 ../shared/datasets/netflix_tv
#
# Env: PY (python, default python3), DEVICE (cuda; cpu for a dry run), T0 (seconds a run may take, 200),
# SKIP_FROZEN=1, BENCH=1 (also benchmarks/gpu/shapes.py), FT_ARGS (the fine-tuning run's --set options).
# Findings of 2026-12-04 (an H200): docs/distributed.md, "Checked on a GPU".
set -u
[ $# -ge 1 ] || { echo "usage: $0 DATA..." >&2; exit 2; }
PY=${PY:-python3}; DEV=${DEVICE:-cuda}; OUT=${OUT:-/tmp/gpu-check}; T0=${T0:-200}; mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 GENREFUSION_CACHE=${GENREFUSION_CACHE:-/tmp/gpu-check-cache}
D="$*"
{ $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
  nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null; } 2>&1 | tee "$OUT/env.txt"
run() {  # NAME ARGS...: train into /tmp/NAME, then one summary line from its metrics.json
  local name=$1 s=$SECONDS; shift
  timeout "$T0" $PY -m genrefusion train $D --out "/tmp/$name" --device "$DEV" --no-progress "$@" > "$OUT/$name.log" 2>&1
  echo "== $name rc=$? $((SECONDS - s)) s" | tee -a "$OUT/summary.txt"
  grep -h "stage .* epoch" "/tmp/$name/train.log" 2>/dev/null | cut -c12-19,50- | tr '\n' ';' >> "$OUT/summary.txt"
  $PY - "/tmp/$name" "$OUT/summary.txt" <<'PYEOF'
import json, sys
try:
    m = json.load(open(sys.argv[1] + "/metrics.json"))
    line = {k: {x: round(v[x], 3) for x in ("micro_f1", "mAP") if isinstance(v.get(x), float)} for k, v in m["models"].items()}
    line["timings"] = m.get("timings")
except Exception as e:
    line = f"no metrics: {e}"
open(sys.argv[2], "a").write(f"\n{sys.argv[1]}: {line}\n"); print(line)
PYEOF
}
[ -n "${SKIP_FROZEN:-}" ] || run frozen
[ -z "${BENCH:-}" ] || $PY "$HERE/shapes.py" 2>&1 | tee -a "$OUT/summary.txt"
FT="--set train.finetune=all --set train.members=1 ${FT_ARGS:---set train.epochs=3 --set train.fused_epochs=3}"
run finetune_all $FT
# kill -KILL a run in the fused stage once its first epoch is checkpointed (the stage needs >= 2 epochs), then
# --resume it with the same arguments: it must go on from that epoch and end as the uninterrupted run did
$PY -m genrefusion train $D --out /tmp/resumed --device "$DEV" --no-progress $FT > "$OUT/killed.log" 2>&1 &
pid=$!
for _ in $(seq $((T0 * 5))); do
  grep -q "stage fused epoch 1/" /tmp/resumed/train.log 2>/dev/null && { sleep 1; break; }
  kill -0 $pid 2>/dev/null || break; sleep 0.2
done
kill -KILL $pid 2>/dev/null; wait $pid
echo "killed rc=$? with: $(ls /tmp/resumed/checkpoints /tmp/resumed/stages 2>/dev/null | tr '\n' ' ')" | tee -a "$OUT/summary.txt"
run resumed --resume $FT
grep -h "resuming" /tmp/resumed/train.log | head -3 | tee -a "$OUT/summary.txt"
$PY - <<'PYEOF' 2>&1 | tee -a "$OUT/summary.txt"
import json
a, b = (json.load(open(f"/tmp/{r}/metrics.json"))["models"] for r in ("finetune_all", "resumed"))
d = max(abs(a[m][k] - b[m][k]) for m in a for k in ("micro_f1", "macro_f1", "mAP") if isinstance(a[m].get(k), float))
print(f"resumed vs uninterrupted: largest metric difference {d:.2e}")
PYEOF
P=$(find $D -name '*.jpg' | head -1)
for r in frozen finetune_all resumed; do
  [ -d "/tmp/$r/model" ] || continue
  $PY -m genrefusion predict "/tmp/$r" ${P:+--poster "$P"} \
    --plot "A mob boss's reluctant son takes over the family's criminal empire in 1940s New York." >> "$OUT/predict.txt" 2>&1
  echo "predict $r rc=$?" | tee -a "$OUT/summary.txt"
done
