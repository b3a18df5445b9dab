#!/usr/bin/env bash
# Run the dptune pipeline for the profile in params.yaml: fetch the SuperGLUE files it needs,
# `dvc repro`, print the results table and where the MLflow runs are. `make run` calls this.
#
#   SUPERGLUE_SOURCE  base URL of the official per-task archives (default) or a local folder of
#                     <Task>/{train,val,test}.jsonl, e.g. ../shared/data/superglue
#   VENV              the virtualenv holding dptune and dvc (default .venv)
# Extra arguments go to `dvc repro` (e.g. a stage name, or --force).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${VENV:-.venv}
SUPERGLUE_SOURCE=${SUPERGLUE_SOURCE:-https://dl.fbaipublicfiles.com/glue/superglue/data/v2}
case $VENV in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export PATH="$VENV/bin:$PATH"
started=$SECONDS

tasks=$(dptune stage tasks --params params.yaml)
echo "== fetching SuperGLUE ($tasks) from $SUPERGLUE_SOURCE"
dptune data fetch --source "$SUPERGLUE_SOURCE" --out data/superglue --tasks "$tasks"

echo "== dvc repro"
dvc repro "$@"

echo
cat reports/results.md
elapsed=$((SECONDS - started))
echo
echo "Pipeline finished in $((elapsed / 60)) min $((elapsed % 60)) s."
echo "Metrics: dvc metrics show / dvc metrics diff | plots: make plots (dvc plots show, offline: dvc_plots/index.html)"
if [[ -n "${MLFLOW_TRACKING_URI:-}" ]]; then
  # the address without its password (user:pass@ shows as user:***@)
  shown=$(printf '%s' "$MLFLOW_TRACKING_URI" | sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/]*@#\1:***@#')
  echo "MLflow runs are on $shown"
else
  echo "MLflow UI: mlflow ui --backend-store-uri sqlite:///mlflow.db  (http://127.0.0.1:5000)"
fi
echo "Promotions: reports/promotions.json (serve models:/<registered model>@champion)"
