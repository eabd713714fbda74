# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= datasets
TOY_ARGS ?= --num-trainval 300 --num-test 60
DEMO_CONFIG ?= configs/toy/digits_R_50_C4.yaml
CHAIN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: env data demo detect-demo test bench clean-output

env:
	@scripts/setup_env.sh

data: env
	$(PY) datasets/prepare_toy_digits.py $(TOY_ARGS)

# The main job: pretrain (SimCLR, SupCon) -> export -> verified conversion -> Faster R-CNN transfer
# on the digit scenes -> table against random init (output/chain/summary.md).
demo: data
	$(PY) tools/run_chain.py $(CHAIN_ARGS)

# Detection transfer alone (Faster R-CNN R50-C4 from random init on the digit scenes).
detect-demo: data
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG)

test: env
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: data
	$(PY) tools/benchmark.py

clean-output:
	rm -rf output
