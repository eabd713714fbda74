#!/usr/bin/env bash
# Classification transfer on the toy digits (docs/results.md, "Classification transfer on the toy
# digits"): ResNet-18 pretrained on the plain digit crops by SimCLR, SupCon and SupCon+SelfSupCon
# (one pretraining each, seed 0), and random init, transferred to the textured crops (the second
# domain) with four protocols, 3 seeds each; prints a Markdown table of mean +- std.
#
#   scripts/toy_cls_table.sh                      # everything under output/cls_table/
#   SGD_MAX_ITER=150 FT_MAX_ITER=100 LBFGS_NUM_REGS=12 scripts/toy_cls_table.sh   # the CPU budget of docs/results.md
#   scripts/toy_cls_table.sh --table              # only print the table of the runs done so far
#
# Idempotent: a run whose results.json exists is skipped (pretraining: its backbone.pth), so an
# interrupted script resumes where it stopped. The SGD protocols' iteration counts are part of
# their folder names, so changing them starts new runs. Logs: output/cls_table/logs/; wall time
# and CPU time of every run: output/cls_table/logs/times.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=${OUT:-output/cls_table}
SEEDS=${SEEDS:-0,1,2}
SGD_MAX_ITER=${SGD_MAX_ITER:-300}   # linear probe (SGD): configs/toy/cls_linear_sgd_R18.yaml has 300
FT_MAX_ITER=${FT_MAX_ITER:-300}     # fine-tuning: configs/toy/cls_finetune_R18.yaml has 300
LBFGS_NUM_REGS=${LBFGS_NUM_REGS:-45} # L-BFGS probe: penalties log-spaced over [1e-6, 1e5] (the protocol: 45; 12 = one per decade)
# torch threads of the feature protocols (L-BFGS, few-shot): their many small L-BFGS fits ran 4-6x
# slower with 2 threads than with 1 on the shared 2-core machine (docs/results.md); "" = torch's default
FEATURE_THREADS=${FEATURE_THREADS:-1}
METHODS=${METHODS:-"simclr supcon supcon_selfsupcon"}
PROTOCOLS=${PROTOCOLS:-"few_shot linear_lbfgs linear_sgd finetune"}
export DETECTRON2_DATASETS=${DETECTRON2_DATASETS:-datasets}
export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
LOGS=$OUT/logs
CACHE=$OUT/feature_cache   # the L-BFGS and few-shot features, shared across seeds and runs
mkdir -p "$LOGS"

# run_timed NAME DONE_FILE CMD...: run CMD unless DONE_FILE exists; log to $LOGS/NAME.log, time to times.tsv
run_timed() {
  local name=$1 done_file=$2
  shift 2
  if [[ -f $done_file ]]; then
    echo "skip $name ($done_file exists)"
    return 0
  fi
  echo "run  $name: $*"
  local t0 status=0 timefile wall user sys
  t0=$(date +%s)
  timefile=$(mktemp)
  # wall, user and system seconds (children included: loader workers, seed processes)
  { TIMEFORMAT='%R %U %S'; time "$@" >"$LOGS/$name.log" 2>&1 || status=$?; } 2>"$timefile"
  read -r wall user sys <"$timefile"
  rm -f "$timefile"
  if (( status != 0 )); then
    echo "FAILED $name (log: $LOGS/$name.log)" >&2
    tail -20 "$LOGS/$name.log" >&2
    printf '%s\tFAILED\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >>"$LOGS/times.tsv"
    return 1
  fi
  printf '%s\t%.0f\t%.0f\t%s\n' "$name" "$wall" "$(echo "$user + $sys" | bc)" "$(date -u +%FT%TZ)" >>"$LOGS/times.tsv"
}

# protocol -> "config extra-overrides out-subfolder"
protocol_args() {
  case $1 in
    linear_sgd)   echo "configs/toy/cls_linear_sgd_R18.yaml|SOLVER.MAX_ITER $SGD_MAX_ITER|linear_sgd_it$SGD_MAX_ITER" ;;
    linear_lbfgs) echo "configs/toy/cls_linear_lbfgs_R18.yaml|CLASSIFICATION.LBFGS.NUM_REGS $LBFGS_NUM_REGS|linear_lbfgs_regs$LBFGS_NUM_REGS" ;;
    few_shot)     echo "configs/toy/cls_few_shot_R18.yaml|CLASSIFICATION.FEW_SHOT.SHOTS (5,)|few_shot_5shot" ;;
    finetune)     echo "configs/toy/cls_finetune_R18.yaml|SOLVER.MAX_ITER $FT_MAX_ITER|finetune_it$FT_MAX_ITER" ;;
    *) echo "unknown protocol $1" >&2; return 1 ;;
  esac
}

print_table() {
  "$PY" - "$OUT" "$SGD_MAX_ITER" "$FT_MAX_ITER" "$METHODS" "$LBFGS_NUM_REGS" <<'EOF'
import json, os, sys
out, sgd_it, ft_it, methods, regs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5]
names = {"random": "random init", "simclr": "SimCLR", "supcon": "SupCon", "supcon_selfsupcon": "SupCon+SelfSupCon"}
cols = [
    (f"linear_sgd_it{sgd_it}", "classification/score", f"linear probe, SGD ({sgd_it} it.)"),
    (f"linear_lbfgs_regs{regs}", "linear/score", f"linear probe, L-BFGS ({regs} penalties)"),
    ("few_shot_5shot", "few_shot/5way_5shot", "few-shot 5-way 5-shot"),
    (f"finetune_it{ft_it}", "classification/score", f"fine-tuning ({ft_it} it.)"),
]
times = {}
tsv = os.path.join(out, "logs", "times.tsv")
if os.path.isfile(tsv):
    for line in open(tsv):
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3 and parts[1] != "FAILED":
            times[parts[0]] = (int(parts[1]), int(parts[2]))  # the last successful run of a name counts
def cell(row, folder, key):
    path = os.path.join(out, row, folder, "results.json")
    if not os.path.isfile(path):
        return "(not run)"
    metrics = json.load(open(path))["metrics"]
    m = next(iter(metrics.values())).get(key)
    if m is None:
        return "(missing)"
    if isinstance(m, dict):
        vals = ", ".join(f"{v:.1f}" for v in m["values"])
        return f"{m['mean']:.1f} ± {m['std']:.1f} ({vals})"
    return f"{m:.1f}"
print("| pretraining (ResNet-18) | " + " | ".join(c[2] for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for row in ["random"] + methods:
    print(f"| {names.get(row, row)} | " + " | ".join(cell(row, f, k) for f, k, _ in cols) + " |")
print()
def mmss(s):
    return f"{s // 60} min {s % 60:02d} s"
print("| run | wall time | CPU time (user + system) |")
print("|---|---|---|")
for name, (wall, cpu) in times.items():
    print(f"| {name} | {mmss(wall)} | {mmss(cpu)} |")
walls, cpus = sum(w for w, _ in times.values()), sum(c for _, c in times.values())
print(f"| total | {mmss(walls)} | {mmss(cpus)} |")
EOF
}

if [[ ${1:-} == "--table" ]]; then
  print_table
  exit 0
fi

# 1. data: format 3 (textured crops) or rebuild
if ! "$PY" -c "import json,sys; sys.exit(json.load(open('$DETECTRON2_DATASETS/toy_digits/manifest.json'))['format_version'] < 3)" 2>/dev/null; then
  run_timed make_data /nonexistent make data
fi

# 2. pretraining, seed 0, one per method (each exports backbone.pth)
for m in $METHODS; do
  run_timed "pretrain_$m" "$OUT/pretrain_$m/backbone.pth" \
    "$PY" tools/pretrain_net.py --config-file "configs/toy/pretrain_${m}_R18.yaml" SEED 0 OUTPUT_DIR "$OUT/pretrain_$m"
done

# 3. transfer to the textured crops: every protocol, every row, seeds $SEEDS (results.json: mean/std)
for proto in $PROTOCOLS; do
  IFS='|' read -r config extra folder <<<"$(protocol_args "$proto")"
  for row in random $METHODS; do
    weights=""
    [[ $row != random ]] && weights="$OUT/pretrain_$row/backbone.pth"
    dir="$OUT/$row/$folder"
    threads=()
    [[ $proto == linear_lbfgs || $proto == few_shot ]] && [[ -n $FEATURE_THREADS ]] && threads=(env "OMP_NUM_THREADS=$FEATURE_THREADS")
    # shellcheck disable=SC2086  # $extra holds KEY VALUE pairs (no spaces inside a value)
    run_timed "${row}_${folder}" "$dir/results.json" \
      "${threads[@]}" "$PY" tools/train_net.py --config-file "$config" --seeds "$SEEDS" \
      MODEL.WEIGHTS "$weights" CLASSIFICATION.FEATURE_CACHE "$CACHE" OUTPUT_DIR "$dir" $extra
  done
done

print_table

# 4. (EXTRA=1) in-domain check: SimCLR pretrained on the textured crops themselves (train split, no
# labels), the same toy recipe and seed, then the L-BFGS probe and few-shot on the textured test set.
if [[ ${EXTRA:-0} == 1 ]]; then
  run_timed pretrain_simclr_textured "$OUT/pretrain_simclr_textured/backbone.pth" \
    "$PY" tools/pretrain_net.py --config-file configs/toy/pretrain_simclr_R18.yaml SEED 0 \
    DATASETS.TRAIN '("toy_digits_textured_cls_train",)' DATASETS.TEST '("toy_digits_textured_cls_test",)' \
    OUTPUT_DIR "$OUT/pretrain_simclr_textured"
  for proto in linear_lbfgs few_shot; do
    IFS='|' read -r config extra folder <<<"$(protocol_args "$proto")"
    # shellcheck disable=SC2086
    run_timed "simclr_textured_${folder}" "$OUT/simclr_textured/$folder/results.json" \
      env "OMP_NUM_THREADS=${FEATURE_THREADS:-1}" "$PY" tools/train_net.py --config-file "$config" --seeds "$SEEDS" \
      MODEL.WEIGHTS "$OUT/pretrain_simclr_textured/backbone.pth" CLASSIFICATION.FEATURE_CACHE "$CACHE" \
      OUTPUT_DIR "$OUT/simclr_textured/$folder" $extra
  done
  METHODS="$METHODS simclr_textured" print_table
fi
