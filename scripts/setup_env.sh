#!/usr/bin/env bash
# Creates (or completes) the project's virtual environment: the pinned torch/torchvision stack,
# contrastive_det (editable, with its pinned dependencies and test tools) and detectron2.
# Idempotent: a stamp records what was installed; nothing is redone while setup.py and these
# scripts are unchanged.
#
# Environment variables: VENV (default .venv), PYTHON (interpreter for a new venv, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.contrastive_det-env"
WANT="$(cat setup.py scripts/setup_env.sh scripts/install_detectron2.sh | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
step() { echo "setup_env: $*"; }
fail() { echo "setup_env: ERROR: $*" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV" || fail "'$PYTHON -m venv $VENV' failed (is the venv module installed?)."
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || fail "Python >= 3.9 is required, $VENV has $("$PY" --version)."

step "installing build tools"
"$PY" -m pip install -q wheel "setuptools>=77,<81" || fail "could not install wheel/setuptools."
step "installing torch==2.14.1 torchvision==0.29.1 (pinned together; about 5.5 GB)"
"$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || fail "could not install torch/torchvision."
step "installing contrastive_det (editable) and its pinned dependencies"
"$PY" -m pip install -q -e ".[dev]" || fail "could not install contrastive_det and its dependencies (see setup.py)."
step "installing detectron2"
scripts/install_detectron2.sh "$PY"
"$PY" -c "import detectron2, contrastive_det" || fail "'import detectron2, contrastive_det' fails in $VENV."
echo "$WANT" > "$STAMP"
step "environment ready: $VENV (activate with: source $VENV/bin/activate)"
