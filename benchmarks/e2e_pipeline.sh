#!/usr/bin/env bash
# E2E, MR -> text, the whole pipeline in one script (benchmarks/README.md, "E2E, eighth round"):
# delexicalise trainset.csv, train the autoencoder, encode the store with the MRs as conditions,
# train the conditional denoiser, adapt the decoder to it, train the condition classifier (and
# its fluency language model) that reranks the MBR candidates, then score dev and test BLEU.
#
#     bash benchmarks/e2e_pipeline.sh                 # defaults: the run on the H100 (base sizes)
#     W=/tmp/e2e AE_SIZE=small AE_STEPS=3000 AE_BATCH=64 AE_LR=1e-3 DN_SIZE=small DN_BATCH=256 \
#       DN_STEPS=18000 THREADS=2 bash benchmarks/e2e_pipeline.sh     # the CPU run (7th, 8th rounds)
#
# Every stage is skipped when its output is complete, and `train-autoencoder` and `train` resume
# from their last checkpoint when a stage was cut off, so the same command can be given again.
# Figures go to $W/results/*.json (one per generation setting), texts to $W/*.jsonl.
set -uo pipefail
W=${W:-e2e-work}
AE_SIZE=${AE_SIZE:-base}; AE_STEPS=${AE_STEPS:-2500}; AE_BATCH=${AE_BATCH:-256}; AE_LR=${AE_LR:-5e-4}
DN_SIZE=${DN_SIZE:-base}; DN_STEPS=${DN_STEPS:-6000}; DN_BATCH=${DN_BATCH:-1024}; DN_LR=${DN_LR:-1e-3}
AD_STEPS=${AD_STEPS:-1000}; GEN_BATCH=${GEN_BATCH:-2000}; DEV_LIMIT=${DEV_LIMIT:-300}
TEST_LIMIT=${TEST_LIMIT:-630}; THREADS=${THREADS:-8}
STAGES=${STAGES:-"ae encode train adapt clf dev test"}
HERE=$(dirname "$0")
mkdir -p "$W/results"
say() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*" >&2; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
resume_flag() { ls -d "$1"/checkpoint-* >/dev/null 2>&1 && echo --resume; }
MP=no; python3 -c "import torch,sys;sys.exit(0 if torch.cuda.is_available() else 1)" && MP=bf16

if [ ! -e "$W/train_delex.csv" ]; then
  python3 "$HERE/e2e_conditional.py" delexicalise --mr --out "$W/train_delex.csv" >&2 || exit 1
fi
if has ae && [ ! -e "$W/ae/config.json" ]; then
  say "train-autoencoder $AE_SIZE, $AE_STEPS steps x $AE_BATCH, mixed precision $MP"
  ldlm train-autoencoder "$W/train_delex.csv" --text-column ref --out "$W/ae" --size "$AE_SIZE" \
    --max-steps "$AE_STEPS" --batch-size "$AE_BATCH" --learning-rate "$AE_LR" --mixed-precision $MP \
    --eval-rows 300 --checkpointing-steps 500 $(resume_flag "$W/ae") || exit 1
fi
if has encode; then  # a complete store is left as it is, a partial one is resumed
  say "encode"
  ldlm encode "$W/train_delex.csv" --autoencoder "$W/ae" --store "$W/train.zarr" --text-column ref \
    --condition-column mr --condition-type text --batch-size 1024 || exit 1
fi
if has train && [ ! -e "$W/run/ldlm_run.json" ]; then
  say "train $DN_SIZE, $DN_STEPS steps x $DN_BATCH, mixed precision $MP"
  ldlm train "$W/train.zarr" --out "$W/run" --arch mlp --size "$DN_SIZE" --conditional --adaln \
    --max-steps "$DN_STEPS" --batch-size "$DN_BATCH" --learning-rate "$DN_LR" --lr-warmup-steps 500 \
    --checkpointing-steps 2000 --save-samples-epochs 100000 --mixed-precision $MP \
    $(resume_flag "$W/run") || exit 1
fi
if has adapt && [ ! -e "$W/ae_adapt/config.json" ]; then
  say "adapt-decoder, $AD_STEPS steps"
  ldlm adapt-decoder "$W/run" --out "$W/ae_adapt" --max-steps "$AD_STEPS" --overwrite || exit 1
fi
if has clf && [ ! -e "$W/clf/config.json" ]; then
  say "train-classifier"
  ldlm train-classifier "$W/train.zarr" --out "$W/clf" --overwrite || exit 1
fi
gen() {  # NAME SPLIT LIMIT ARGS...: one text per distinct MR, W = 1, DPM-Solver 20 steps
  local name=$1 split=$2 limit=$3; shift 3
  [ -e "$W/results/$name.json" ] && return 0
  say "generate $name"
  python3 "$HERE/e2e_conditional.py" generate "$W/run" --split "$split" --limit "$limit" \
    --scheduler dpm-solver --steps 20 --guidance-scale 1 --relexicalise --delexicalise-mr \
    --batch-size "$GEN_BATCH" --threads "$THREADS" --out "$W/$name.jsonl" "$@" \
    > "$W/results/$name.json.tmp" && mv "$W/results/$name.json.tmp" "$W/results/$name.json"
  cat "$W/results/$name.json"
}
if has dev; then
  gen dev_greedy_original dev "$DEV_LIMIT" --noise-scale 0
  gen dev_greedy dev "$DEV_LIMIT" --noise-scale 0 --autoencoder "$W/ae_adapt"
  gen dev_mbr40 dev "$DEV_LIMIT" --noise-scale 0.2 --mbr 40 --autoencoder "$W/ae_adapt"
  gen dev_mbr40_rr dev "$DEV_LIMIT" --noise-scale 0.2 --mbr 40 --autoencoder "$W/ae_adapt" --reranker "$W/clf"
  gen dev_mbr160_rr_lm dev "$DEV_LIMIT" --noise-scale 0.2 --mbr 160 --autoencoder "$W/ae_adapt" \
    --reranker "$W/clf" --fluency-weight 10
  gen dev_mbr320_rr_lm dev "$DEV_LIMIT" --noise-scale 0.2 --mbr 320 --autoencoder "$W/ae_adapt" \
    --reranker "$W/clf" --fluency-weight 10
fi
if has test; then
  gen test_greedy test "$TEST_LIMIT" --noise-scale 0 --autoencoder "$W/ae_adapt"
  gen test_mbr40 test "$TEST_LIMIT" --noise-scale 0.2 --mbr 40 --autoencoder "$W/ae_adapt"
  gen test_mbr80 test "$TEST_LIMIT" --noise-scale 0.2 --mbr 80 --autoencoder "$W/ae_adapt"
  gen test_mbr40_rr test "$TEST_LIMIT" --noise-scale 0.2 --mbr 40 --autoencoder "$W/ae_adapt" --reranker "$W/clf"
  gen test_mbr80_rr test "$TEST_LIMIT" --noise-scale 0.2 --mbr 80 --autoencoder "$W/ae_adapt" --reranker "$W/clf"
  gen test_mbr320_rr_lm test "$TEST_LIMIT" --noise-scale 0.2 --mbr 320 --autoencoder "$W/ae_adapt" \
    --reranker "$W/clf" --fluency-weight 10    # the eighth round's figure
fi
say "done"
