#!/usr/bin/env bash
# A folder that runs contrastive-det on a machine that has Python, torch and torchvision but no
# network and no detectron2 (e.g. an air-gapped GPU node with its own CUDA build of torch):
# the pure-Python packages the suite needs beyond that (detectron2's Python code without its
# compiled _C, fvcore, iopath, yacs, omegaconf, hydra, antlr4, termcolor, submitit, mlxtend),
# copied from this machine's .venv, and pycocotools as a wheel for the target's Python.
#
# Usage:  scripts/offline_bundle.sh [OUT] [PYTHON_VERSION]     (default: .whl, 3.12)
# There:  python3 -m pip install --no-index --no-deps --target /tmp/site OUT/*.whl
#         export PYTHONPATH=/tmp/site:$PWD/OUT/site:$PWD
#         scripts/gpu_check.sh output/gpu_check              (PYTHON=python3 when there is no .venv)
# The target keeps its own torch, torchvision, numpy, scipy, opencv, matplotlib, pillow, pyyaml,
# tabulate, tqdm, cloudpickle, portalocker and tensorboard (install those too where it has none).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-.whl}"
PYV="${2:-3.12}"
SITE="$(ls -d .venv/lib/python3*/site-packages 2>/dev/null | head -n 1)"
[[ -n "$SITE" ]] || { echo "offline_bundle: no .venv here; run 'make test' or scripts/setup_env.sh first" >&2; exit 1; }
rm -rf "$OUT/site"
mkdir -p "$OUT/site"
for pkg in detectron2 fvcore iopath yacs omegaconf hydra antlr4 termcolor submitit mlxtend; do
  [[ -d "$SITE/$pkg" ]] || { echo "offline_bundle: $SITE/$pkg is missing" >&2; exit 1; }
  (cd "$SITE" && tar cf - --exclude=__pycache__ --exclude='_C*.so' "$pkg") | tar xf - -C "$OUT/site"
  for info in "$SITE"/*.dist-info; do  # the distribution that installed it (its RECORD lists the package)
    if grep -q "^$pkg/" "$info/RECORD" 2>/dev/null; then cp -r "$info" "$OUT/site/"; fi
  done
done
COCO="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pycocotools"))')"
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$OUT" "pycocotools==$COCO" \
  || { echo "offline_bundle: could not download pycocotools $COCO for Python $PYV" >&2; exit 1; }
echo "offline_bundle: $OUT ($(du -sh "$OUT" | cut -f1)): $OUT/site and $(ls "$OUT"/*.whl | xargs -n1 basename)"
