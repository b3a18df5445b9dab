# Kubeflow Pipelines targets (docs/kubeflow.md). Merge into the Makefile; they use its
# $(STAMP) (the installed venv) and $(BIN).
#
#   make pipeline-compile                       # pipeline/dptune_pipeline.yaml from profiles/paper.yaml
#   make pipeline-submit KFP_HOST=https://kfp.example.org KFP_IMAGE=ghcr.io/acme/dptune:0.1.0
#   make pipeline-local                         # the smoke profile, here, with kfp.local
#   make pipeline-image KFP_IMAGE=... [TORCH_VARIANT=cpu]

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

pipeline-submit: $(STAMP)
	@test -n "$(KFP_HOST)" || { echo "error: set KFP_HOST=<Kubeflow Pipelines API URL>" >&2; exit 2; }
	$(BIN)/dptune pipeline submit --host $(KFP_HOST) --profile $(KFP_PROFILE) \
		--experiment $(KFP_EXPERIMENT) $(KFP_IMAGE_FLAG)

pipeline-local: $(STAMP)
	$(BIN)/dptune pipeline run-local --profile $(KFP_LOCAL_PROFILE) --data-dir $(KFP_LOCAL_DATA)

pipeline-image:
	@test -n "$(KFP_IMAGE)" || { echo "error: set KFP_IMAGE=<registry>/dptune:<tag>" >&2; exit 2; }
	docker build --build-arg TORCH_VARIANT=$(TORCH_VARIANT) -t $(KFP_IMAGE) .
