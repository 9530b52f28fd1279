#!/usr/bin/env bash
# Diversity regulariser over the in-batch items (scope=batch) vs each user's top-50 items
# (scope=topk) on the default shop_sim model; see README.md.
# Usage: experiments/diversity_scope/run.sh [folder]   (two lanes, one torch thread each)
set -euo pipefail
R=${1:-outputs/diversity_scope}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1
grid() {  # grid <term>: λ in {0.5, 2} x scope in {batch, topk}
  $PY train.py -m logger=csv "loss/diversity=$1" loss.diversity_weight=0.5,2.0 \
    loss.diversity.scope=batch,topk hydra.sweep.dir="$R/$1" >"$R/$1.log" 2>&1
}
small() {  # small <term>: scope=topk at the small λ in {0.02, 0.05, 0.1}
  $PY train.py -m logger=csv "loss/diversity=$1" loss.diversity_weight=0.02,0.05,0.1 \
    loss.diversity.scope=topk hydra.sweep.dir="$R/$1-topk-small" >"$R/$1-topk-small.log" 2>&1
}
mkdir -p "$R"
if [ "${ONLY_SMALL:-0}" != 1 ]; then
  ($PY train.py logger=csv hydra.run.dir="$R/none" >"$R/none.log" 2>&1 && grid category_entropy) &
  grid ils
  wait
fi
small category_entropy &
small ils
wait
$PY -m divrec.reports.cli "$R" --out "$(dirname "$0")"   # report.csv, pareto.png
