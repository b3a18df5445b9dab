PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Base URL of the official per-task archives, or a local folder of <Task>/{train,val,test}.jsonl.
# This project's machines have no internet: make run SUPERGLUE_SOURCE=../shared/data/superglue
SUPERGLUE_SOURCE ?= https://dl.fbaipublicfiles.com/glue/superglue/data/v2

.PHONY: install test test-fast test-slow lint run clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Fast tests, then the slow end-to-end ones (DVC, kfp.local, sigkill, benchmark smoke) as a step
# of their own; gpu tests only with `pytest -m gpu` on a GPU machine. pytest exits 5 when a
# marker selects no tests, which is no failure here.
PYTEST_FAST = $(BIN)/python -m pytest -q -m "not slow and not gpu" || test $$? -eq 5
PYTEST_SLOW = $(BIN)/python -m pytest -q -m "slow and not gpu" || test $$? -eq 5

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(PYTEST_FAST)
	$(PYTEST_SLOW)

test-fast: $(STAMP)
	$(PYTEST_FAST)

test-slow: $(STAMP)
	$(PYTEST_SLOW)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# The default DVC pipeline end to end: fetch data, dvc repro, print the results table.
run: $(STAMP)
	SUPERGLUE_SOURCE='$(SUPERGLUE_SOURCE)' VENV='$(VENV)' scripts/run_pipeline.sh

clean:
	rm -rf $(VENV) .pytest_cache

# Kubeflow Pipelines (docs/kubeflow.md): compile, submit, run locally with kfp.local, build the image.
KFP_PROFILE ?= paper
KFP_PIPELINE ?= pipeline/dptune_pipeline.yaml
KFP_HOST ?=
KFP_EXPERIMENT ?= dptune
KFP_IMAGE ?=
KFP_LOCAL_PROFILE ?= smoke
KFP_LOCAL_DATA ?= data/superglue
TORCH_VARIANT ?= cu128
KFP_IMAGE_FLAG = $(if $(KFP_IMAGE),--image $(KFP_IMAGE))

.PHONY: pipeline-compile pipeline-submit pipeline-local pipeline-image

pipeline-compile: $(STAMP)
	$(BIN)/dptune pipeline compile --profile $(KFP_PROFILE) --out $(KFP_PIPELINE) $(KFP_IMAGE_FLAG)
	$(BIN)/dptune pipeline components --out components

pipeline-submit: $(STAMP)
	@test -n "$(KFP_HOST)" || { echo "error: set KFP_HOST=<Kubeflow Pipelines API URL>" >&2; exit 2; }
	$(BIN)/dptune pipeline submit --host $(KFP_HOST) --profile $(KFP_PROFILE) \
		--experiment $(KFP_EXPERIMENT) $(KFP_IMAGE_FLAG)

pipeline-local: $(STAMP)
	$(BIN)/dptune pipeline run-local --profile $(KFP_LOCAL_PROFILE) --data-dir $(KFP_LOCAL_DATA)

pipeline-image:
	@test -n "$(KFP_IMAGE)" || { echo "error: set KFP_IMAGE=<registry>/dptune:<tag>" >&2; exit 2; }
	docker build --build-arg TORCH_VARIANT=$(TORCH_VARIANT) -t $(KFP_IMAGE) .
