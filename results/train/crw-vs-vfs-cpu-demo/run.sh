#!/bin/bash
# CRW and VFS cpu-demo trained side by side on the 35 real training videos, scored on the 10 real DAVIS-2016 val sequences.
set -u
cd /work/exp
export PYTHONPATH=/work/exp HARNESS_CACHE=/work/exp-out/cache OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
OUT=/work/exp-out
DATA=(--data /work/shared/data/davis2016-train-videos --data /work/shared/data/videos)
EVAL=(--eval-task davis2016 --eval-data-root /work/shared/data/davis2016-val10/DAVIS)
date -u +%FT%T > $OUT/started
python -m harness train --method crw --recipe crw-cpu-demo "${DATA[@]}" --out-dir $OUT/crw --max-steps 40 --eval-every 20 "${EVAL[@]}" --no-progress --device cpu > $OUT/crw.log 2>&1 &
CRW=$!
python -m harness train --method vfs --recipe vfs-cpu-demo "${DATA[@]}" --out-dir $OUT/vfs --max-steps 20 --eval-every 20 "${EVAL[@]}" --no-progress --device cpu > $OUT/vfs.log 2>&1
# equal training wall: wait for CRW's 40th step, then let VFS train as long as CRW did
until python -c "import json,sys; s=[json.loads(l) for l in open('$OUT/crw/metrics.jsonl') if l.strip()]; sys.exit(0 if any(e.get('step')==40 and e.get('kind')!='eval' for e in s) else 1)" 2>/dev/null; do sleep 20; done
N=$(python - <<PY
import json
def steps(p): return [json.loads(l) for l in open(p) if l.strip() and '"kind": "eval"' not in l]
crw = sum(e["time"]["step"] for e in steps("$OUT/crw/metrics.jsonl"))
vfs = steps("$OUT/vfs/metrics.jsonl")
per = sum(e["time"]["step"] for e in vfs) / len(vfs)
print(max(40, min(400, round(crw / per))))
PY
)
echo "vfs equal-wall steps: $N" > $OUT/vfs-steps.txt
python -m harness train --method vfs --recipe vfs-cpu-demo "${DATA[@]}" --out-dir $OUT/vfs --max-steps $N --eval-every $N "${EVAL[@]}" --no-progress --device cpu --resume >> $OUT/vfs.log 2>&1
wait $CRW
date -u +%FT%T > $OUT/finished
