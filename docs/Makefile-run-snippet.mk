# --- `make run`: the default DVC pipeline end to end (merge into the Makefile) ---------------
# SUPERGLUE_SOURCE: base URL of the official per-task archives, or a local folder of
# <Task>/{train,val,test}.jsonl; this project's machines have no internet:
#   make run SUPERGLUE_SOURCE=../shared/data/superglue
SUPERGLUE_SOURCE ?= https://dl.fbaipublicfiles.com/glue/superglue/data/v2

.PHONY: run

run: $(STAMP)
	SUPERGLUE_SOURCE='$(SUPERGLUE_SOURCE)' VENV='$(VENV)' scripts/run_pipeline.sh
