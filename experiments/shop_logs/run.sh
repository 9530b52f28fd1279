#!/usr/bin/env bash
# The shop-log study (see README.md): a transaction log built from shop_sim, random vs
# temporal split, with and without repeat purchases, categories from clusters vs none, for
# pop, EASE, buy-again and the default two-tower; 3 seeds each. Then study.py.
# Usage: experiments/shop_logs/run.sh [runs folder]   (two lanes, one torch thread each;
# a finished run folder is skipped, so the script can be re-run after an interruption)
set -euo pipefail
R=${1:-outputs/shop_logs}
PY=${PYTHON:-python}
SEEDS=${SEEDS:-1,2,3}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$R/logs"
LOG=$R/lines.csv.gz
[ -f "$LOG" ] || $PY -m experiments.shop_logs.make_log "$LOG" --truth "$R/truth.json"

COMMON=(
  data=transactions "data.path=$LOG" logger=csv
  "data.columns={user:CustomerID,item:StockCode,time:InvoiceDate,quantity:Quantity,invoice:InvoiceNo,price:UnitPrice,description:Description}"
  "data.time_format='%m/%d/%Y %H:%M'"
  "eval.metrics=[recall,ndcg,hit,recall_repeat,recall_new,ndcg_repeat,ndcg_new,repeat_share,ild_cat,ild_emb,cat_coverage,item_coverage,novelty]"
)
REPEATS_OFF=(data.aggregate=pair)  # one interaction per (customer, item); seen items masked
REPEATS_ON=(data.aggregate=invoice data.preprocess.dedup=none eval.mask_seen=false)
SWEEP="rerank_sweep={key:diversity,values:[0.0,0.3,0.6],names:[mmr,xquad]}"
SWEEP_NONE="rerank_sweep={key:diversity,values:[0.0,0.3,0.6],names:[mmr]}"

run() {  # run <folder> <overrides...>: one multirun (the seeds), skipped when done
  local dir=$1; shift
  [ -f "$R/$dir/.done" ] && return 0
  rm -rf "${R:?}/$dir"
  if $PY train.py -m "${COMMON[@]}" "$@" hydra.sweep.dir="$R/$dir" >"$R/logs/$dir.log" 2>&1; then
    touch "$R/$dir/.done"
  else
    echo "FAILED: $dir (log: $R/logs/$dir.log)" >&2
  fi
}

lane() {  # lane <split method>: every model x repeat setting on that split
  local split=$1 rep
  for rep in off on; do
    local -a over=("data.split.method=$split" data.categories_from=clusters)
    if [ "$rep" = on ]; then over+=("${REPEATS_ON[@]}"); else over+=("${REPEATS_OFF[@]}"); fi
    local tag=$split-repeats_$rep
    run "$tag-two_tower" "${over[@]}" "$SWEEP" "seed=$SEEDS"
    run "$tag-ease" "${over[@]}" model=ease "seed=$SEEDS"
    run "$tag-pop" "${over[@]}" model=pop "seed=$SEEDS"
    [ "$rep" = on ] && run "$tag-buy_again" "${over[@]}" model=buy_again "seed=$SEEDS"
    # categories none: each seed's two-tower checkpoint re-scored (no retraining) on the
    # catalogue as the log gives it, without categories
    local job ckpt
    for job in "$R/$tag-two_tower"/[0-9]*; do
      ckpt=$(ls "$job"/checkpoints/epoch*.ckpt 2>/dev/null | head -1) || continue
      [ -n "$ckpt" ] || continue
      seed=$(awk -F': ' '$1 == "seed" {print $2; exit}' "$job/.hydra/config.yaml")
      run "$tag-two_tower_nocats-s$seed" "${over[@]/data.categories_from=clusters/data.categories_from=source}" \
        "$SWEEP_NONE" "seed=$seed" train=false "ckpt_path=$ckpt"
    done
  done
}

lane random &
lane global_temporal
wait
$PY -m experiments.shop_logs.study "$R"
