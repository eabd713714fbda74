#!/usr/bin/env bash
# Installs detectron2 into the active Python environment, idempotently.
#
# 1. If `import detectron2` already works (e.g. a from-source build with compiled ops on a GPU
#    machine), nothing is done.
# 2. Otherwise the registry snapshot `sal-detectron2==0.7.2` (upstream detectron2 at a59f0563 plus
#    detectron2/projects) is downloaded as its cp310 wheel, its CPython-3.10-only `_C*.so` is
#    removed, the wheel is re-tagged `py3-none-any` and installed. Without `_C`, Faster R-CNN
#    trains and evaluates (NMS/ROIAlign come from torchvision); deformable and rotated ops raise.
#
# Usage: scripts/install_detectron2.sh [PYTHON]   (default: python on PATH)
set -euo pipefail
PY="${1:-python}"
SNAPSHOT="sal-detectron2==0.7.2"

fail() { echo "install_detectron2: ERROR: $*" >&2; exit 1; }

if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('detectron2') is None)"; then
  LOC="$("$PY" -c "import importlib.util; print(importlib.util.find_spec('detectron2').submodule_search_locations[0])")"
  echo "install_detectron2: detectron2 already installed at $LOC; keeping it."
  "$PY" -c "import detectron2" || fail "detectron2 at $LOC does not import (see the traceback above); install its dependencies with 'pip install -e .' first."
  exit 0
fi

"$PY" -m pip --version >/dev/null 2>&1 || fail "'$PY -m pip' does not work; activate the environment first."
"$PY" -m wheel version >/dev/null 2>&1 || "$PY" -m pip install -q wheel || fail "could not install the 'wheel' package."

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "install_detectron2: downloading $SNAPSHOT (cp310 wheel, Python code only will be used)"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 "$SNAPSHOT" -d "$WORK/dl" \
  || fail "pip could not download $SNAPSHOT from the package registry (is the registry reachable?)."
WHL="$(ls "$WORK"/dl/*.whl 2>/dev/null | head -n 1)"
[ -n "$WHL" ] || fail "no wheel found after downloading $SNAPSHOT into $WORK/dl."

"$PY" -m wheel unpack "$WHL" -d "$WORK/unpacked" >/dev/null || fail "could not unpack $WHL."
SRC="$(ls -d "$WORK"/unpacked/*/ | head -n 1)"
rm -f "$SRC"/detectron2/_C*.so
[ -z "$(ls "$SRC"/detectron2/_C*.so 2>/dev/null)" ] || fail "could not remove the compiled detectron2/_C*.so from $SRC."
WHEEL_META="$(ls "$SRC"/*.dist-info/WHEEL)"
[ -f "$WHEEL_META" ] || fail "no *.dist-info/WHEEL in $SRC."
# Pure-Python from now on: one universal tag (the file may lack a final newline).
"$PY" - "$WHEEL_META" <<'PYEOF'
import sys
path = sys.argv[1]
lines = [l for l in open(path).read().splitlines() if l.strip() and not l.startswith(("Tag:", "Root-Is-Purelib:"))]
lines += ["Root-Is-Purelib: true", "Tag: py3-none-any"]
open(path, "w").write("\n".join(lines) + "\n")
PYEOF
mkdir -p "$WORK/packed" && "$PY" -m wheel pack "$SRC" -d "$WORK/packed" >/dev/null || fail "could not re-pack the wheel from $SRC."
PACKED="$(ls "$WORK"/packed/*.whl | head -n 1)"
echo "install_detectron2: installing $(basename "$PACKED")"
"$PY" -m pip install -q --no-deps "$PACKED" || fail "pip could not install $PACKED."
"$PY" -c "import detectron2" || fail "detectron2 was installed but does not import."
echo "install_detectron2: detectron2 installed (pure Python, no compiled _C ops)."
