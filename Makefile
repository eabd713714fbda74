# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
export DETECTRON2_DATASETS ?= datasets
TOY_ARGS ?= --num-trainval 300 --num-test 60
DEMO_CONFIG ?= configs/toy/digits_R_50_C4.yaml
DEMO_STUDY ?= configs/studies/islam_toy.yaml
DEMO_JOBS ?= 2
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` (0: one process). The SLURM cluster tests share one worker
# (xdist_group), so they never compete for the cluster's CPUs.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadgroup

.PHONY: env data demo detect-demo test test-fast lint bench clean-output

env:
	@scripts/setup_env.sh

data: env
	$(PY) datasets/prepare_toy_digits.py $(TOY_ARGS)

# The main job: the toy Islam study (configs/studies/islam_toy.yaml): SimCLR, SupCon and SupCon+SelfSupCon
# pretraining -> export -> verified conversion -> linear probe, few-shot and Faster R-CNN transfer against
# random init, 3 seeds -> report (output/studies/islam_toy/report/report.md). Each run's output, detectron2's
# environment dump included, goes to its log file; the console shows progress and the tables.
demo: data
	$(PY) tools/run_study.py $(DEMO_STUDY) --jobs $(DEMO_JOBS)

# Detection transfer alone (Faster R-CNN R50-C4 from random init on the digit scenes).
detect-demo: data
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG)

test: env
	$(PY) -m pytest tests $(XDIST) $(PYTEST_ARGS)

# The fast part: every test not marked slow (pytest.ini).
test-fast: env
	$(PY) -m pytest tests -m "not slow" $(XDIST) $(PYTEST_ARGS)

# The linter and the formatter check (ruff.toml): pyflakes, pycodestyle, bugbear; `ruff format` at 100
# columns (run `.venv/bin/ruff format .` to apply it).
lint: env
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: data
	$(PY) tools/benchmark.py

clean-output:
	rm -rf output
