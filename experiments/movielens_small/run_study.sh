#!/usr/bin/env bash
# Runs every training and re-scoring of the MovieLens study, then study.py (see README.md).
# Usage: DIVREC_DATA_DIR=../shared/data experiments/movielens_small/run_study.sh [runs folder]
# JOBS parallel jobs (default 2), one torch thread each; a finished run folder is skipped, so
# the script can be re-run after an interruption.
set -euo pipefail
R=${1:-outputs/ml_study}
JOBS=${JOBS:-2}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P="+protocol=recbole data=movielens logger=csv rerank=mmr rerank.diversity=0.0"
P="$P rerank_sweep={key:diversity,values:[0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8],names:[mmr,dpp]}"
mkdir -p "$R/logs"

job() {  # job <folder> <overrides...>: one multirun (seeds of the protocol, or the given one)
  local dir=${1:-}; shift || true
  if [ -z "$dir" ]; then echo "job: no run folder given" >&2; return 1; fi  # never rm -rf "$R/"
  set -f  # overrides hold [ ] and { }: never glob them
  if [ -f "$R/$dir/.done" ]; then return 0; fi
  rm -rf "${R:?}/$dir"
  # the folder is quoted for Hydra: tuned folders' names hold '=' and ','
  # shellcheck disable=SC2086
  if $PY train.py $P "$@" hydra.sweep.dir="'$R/$dir'" >"$R/logs/${dir//\//_}.log" 2>&1; then
    touch "$R/$dir/.done"
  else
    echo "FAILED: $dir (log: $R/logs/${dir//\//_}.log)" >&2
    return 1
  fi
}
export -f job
export R P PY

queue() {  # one job per input line; ONLY="<folder> ...": run just those folders
  grep -v '^$' | { if [ -n "${ONLY:-}" ]; then grep -E "^($(echo "$ONLY" | tr ' ' '|'))( |$)"; else cat; fi; } |
    xargs -r -P "$JOBS" -L 1 bash -c 'job "$@"' _ || true  # a failed job is reported, not fatal
}

# 1. trainings (longest first), the tuned grids: 3 settings per tuned model and seed
queue <<'EOF'
history_hybrid model.user_tower=history model/cf=hybrid model.id_embeddings=false
history_hybrid_id model.user_tower=history model/cf=hybrid
reg_ils loss/diversity=ils loss.diversity_weight=0.5
reg_dpp loss/diversity=dpp loss.diversity_weight=0.5
reg_category_entropy loss/diversity=category_entropy loss.diversity_weight=0.5
lightgcn model=lightgcn model.options.lr=0.01 trainer.max_epochs=40
text_id
text_id_tuned--lr=2e-4 optim.lr=2e-4
text_id_tuned--lr=1e-3 optim.lr=1e-3
text_id_tuned--lr=5e-3 optim.lr=5e-3
text_only model.id_embeddings=false
ease model=ease
ease_tuned--l2=100 model=ease model.options.l2=100
ease_tuned--l2=300 model=ease model.options.l2=300
ease_tuned--l2=1000 model=ease model.options.l2=1000
bpr model=bpr model.options.lr=0.01 trainer.max_epochs=40
itemknn model=itemknn
pop model=pop
EOF

# 2. the hybrid grid: each seed's two hybrid checkpoints re-scored (no retraining) at 3 settings
for s in 1 2 3; do
  for setting in "false 0.5 0.5 50" "true 0.5 0.5 50" "true 0.25 0.25 50"; do
    read -r id ib ub k <<<"$setting"
    if [ "$id" = true ]; then run=$R/history_hybrid_id/$((s - 1)); else run=$R/history_hybrid/$((s - 1)); fi
    [ -d "$run/checkpoints" ] || continue  # that hybrid was not trained (ONLY)
    ckpt=$(ls "$run"/checkpoints/epoch*.ckpt)
    echo "history_hybrid_tuned--id=$id,ib=$ib,ub=$ub,k=$k/s$s hydra.sweeper.params.seed=$s" \
      "model.user_tower=history model/cf=hybrid model.id_embeddings=$id train=false" \
      "ckpt_path=$ckpt model.cf.weights.item_based=$ib model.cf.weights.user_based=$ub model.cf.k=$k"
  done
done | queue

# 3. each seed's chosen hybrid setting, trained with the genre-entropy regulariser
$PY -m experiments.movielens_small.study "$R" --tuned | awk '$1 == "history_hybrid_tuned"' |
  while read -r _ s setting _; do
    IFS=, read -r id ib ub k <<<"${setting%%/*}"
    echo "hybrid_tuned_entropy/s$s hydra.sweeper.params.seed=$s model.user_tower=history" \
      "model/cf=hybrid model.id_embeddings=${id#id=} model.cf.weights.item_based=${ib#ib=}" \
      "model.cf.weights.user_based=${ub#ub=} model.cf.k=${k#k=}" \
      "loss/diversity=category_entropy loss.diversity_weight=0.5"
  done | queue

# 4. the table, CSVs and plot (README.md between its markers)
$PY -m experiments.movielens_small.study "$R"
