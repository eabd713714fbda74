#!/usr/bin/env bash
# Every CLI path on one GPU, then the two speed figures the docs report for a GPU:
#   1. detection: Faster R-CNN R50-C4 on the toy scenes (train, evaluate, results.json)
#   2. pretraining with AMP (SimCLR R18), export
#   3. a classification probe (L-BFGS) of the exported backbone
#   4. semantic segmentation: MoCo's FCN-16s on the toy label maps (train, evaluate), then the step of
#      train_net against a bare SemanticSegmentor loop (tools/benchmark.py --only seg_ratio)
#   5. a two-run study (--jobs 2: each run its own device when the machine has two)
#   6. R50-C4 VOC s/iter at the protocol's sizes, 2 img/iter (against detectron2's published 0.537 s/iter
#      on 8 V100s), and AMP pretraining images/s of pretrain_net's step against a bare AMP loop on the
#      same model and batch (tools/benchmark.py --only voc_full --only pretrain_ratio)
# Each step's output goes to OUT/<step>.log; a summary with the figures to OUT/summary.txt.
#
# Usage:  scripts/gpu_check.sh [OUT]                 # on a GPU machine (default OUT: output/gpu_check)
#         DEVICE=cpu QUICK=1 scripts/gpu_check.sh    # the CPU rehearsal: the same steps, tiny, no AMP
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-output/gpu_check}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
PY="${PYTHON:-.venv/bin/python}"
[[ -x "$PY" ]] || PY=python
export DETECTRON2_DATASETS="${DETECTRON2_DATASETS:-datasets}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
AMP=True; [[ "$DEVICE" == cpu ]] && AMP=False        # detectron2's AMPTrainer needs CUDA
if [[ "$QUICK" == 1 ]]; then ITERS=2; PITERS=2; BENCH="--warmup 1 --voc-iters 1 --trials 1 --block 1"
else ITERS=200; PITERS=300; BENCH="--warmup 5 --voc-iters 20 --trials 5 --block 20"; fi
status=0

step() {  # step NAME command...: runs it, logs it, records PASS/FAIL with the time
    local name="$1"; shift
    local t0; t0=$(date +%s)
    echo "== $name: $*" | tee -a "$SUMMARY"
    if "$@" >"$OUT/$name.log" 2>&1; then
        echo "   PASS ($(( $(date +%s) - t0 )) s)" | tee -a "$SUMMARY"
    else
        echo "   FAIL ($(( $(date +%s) - t0 )) s): tail of $OUT/$name.log:" | tee -a "$SUMMARY"
        tail -20 "$OUT/$name.log" | tee -a "$SUMMARY"
        status=1
    fi
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee -a "$SUMMARY"
[[ -d "$DETECTRON2_DATASETS/toy_digits" ]] || step data "$PY" datasets/prepare_toy_digits.py --num-trainval 300 --num-test 60

step detection "$PY" tools/train_net.py --config-file configs/toy/digits_R_50_C4.yaml \
    MODEL.DEVICE "$DEVICE" SOLVER.MAX_ITER "$ITERS" OUTPUT_DIR "$OUT/detection"
step pretrain_amp "$PY" tools/pretrain_net.py --config-file configs/toy/pretrain_simclr_R18.yaml \
    MODEL.DEVICE "$DEVICE" SOLVER.AMP.ENABLED "$AMP" SOLVER.MAX_ITER "$PITERS" OUTPUT_DIR "$OUT/pretrain"
step probe "$PY" tools/train_net.py --config-file configs/toy/cls_linear_lbfgs_R18.yaml \
    MODEL.DEVICE "$DEVICE" MODEL.WEIGHTS "$OUT/pretrain/backbone.pth" CLASSIFICATION.FEATURE_CACHE "$OUT/cache" \
    OUTPUT_DIR "$OUT/probe"
step segmentation "$PY" tools/train_net.py --config-file configs/toy/seg_digits_R_50_FCN16s.yaml \
    MODEL.DEVICE "$DEVICE" SOLVER.MAX_ITER "$ITERS" OUTPUT_DIR "$OUT/segmentation"

cat >"$OUT/study.yaml" <<YAML
name: gpu_check
output_dir: $OUT/study
pretrain:
  methods:
    simclr: {config: configs/toy/pretrain_simclr_R18.yaml, opts: {MODEL.DEVICE: $DEVICE, SOLVER.MAX_ITER: $ITERS}}
  seeds: [0]
  random_init: false
transfer:
  seeds: [0, 1]
  runs:
    lbfgs: {config: configs/toy/cls_linear_lbfgs_R18.yaml, opts: {MODEL.DEVICE: $DEVICE, CLASSIFICATION.FEATURE_CACHE: $OUT/cache}}
YAML
step study "$PY" tools/run_study.py "$OUT/study.yaml" --jobs 2 --no-pictures

# detectron2's published figure is full precision: so is ours; the pretraining ratio runs with AMP on both sides
step bench_voc "$PY" tools/benchmark.py --only voc_full $BENCH --json "$OUT/bench_voc.json" MODEL.DEVICE "$DEVICE"
step bench_amp "$PY" tools/benchmark.py --only pretrain_ratio --only pretrain_r18 $BENCH --json "$OUT/bench_amp.json" \
    MODEL.DEVICE "$DEVICE" SOLVER.AMP.ENABLED "$AMP"
step bench_seg "$PY" tools/benchmark.py --only seg_ratio $BENCH --json "$OUT/bench_seg.json" MODEL.DEVICE "$DEVICE"
grep -hE "s/iter|images/s" "$OUT/bench_voc.log" "$OUT/bench_amp.log" "$OUT/bench_seg.log" | tee -a "$SUMMARY"
echo "summary: $SUMMARY" 
exit $status
