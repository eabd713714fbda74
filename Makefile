# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= datasets
TOY_ARGS ?= --num-trainval 300 --num-test 60
DEMO_CONFIG ?= configs/toy/digits_R_50_C4.yaml
PYTEST_ARGS ?=

.PHONY: env data demo test bench clean-output

env:
	@scripts/setup_env.sh

data: env
	$(PY) datasets/prepare_toy_digits.py $(TOY_ARGS)

demo: data
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG)

test: env
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: data
	$(PY) tools/benchmark.py

clean-output:
	rm -rf output
