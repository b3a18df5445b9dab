"""MLflow tracking, the model registry and promotion. The only package that imports MLflow.

Typical use by a stage, after the run folder is complete:

    check_tracking_access(configure())            # before training starts
    train(cfg, callbacks=[LiveRun("train")])     # tracking.live: the run shows while it trains
    run_id = log_run_folder(out, stage="train")   # or, afterwards, from the folder alone
    version = register_run_folder(run_id, out)    # a new version, tagged comparable
    set_challenger("dptune-cb-minilm", [version])  # the best of one pipeline run's versions
    promote("dptune-cb-minilm")                   # `champion`, if it beats the current one on dev

Modules: `client` (where runs go; `write_access` asks whether this user may write there),
`live` and `runs` (logging a run, live or from its folder; `run_claim` gives a folder one run),
`lineage` (its datasets), `stage_results` (other stages' results), `pyfunc` (a run as a
servable model), `model_versions` (registering it), `promotion` (its aliases; `promotion_lock`
serialises them, `evidence` says what a version's run vouches for), `serving_checks`
(whether a version serves), `serving_limits` and `serving_app` (what a request may cost; the
HTTP app `dptune serve` runs).
"""

from dptune.backbones.names import short_backbone_name
from dptune.tracking.client import (
    check_tracking_access,
    check_tracking_server,
    configure,
    ensure_experiment,
    experiment_name,
    initialise_store,
    tracking_uri,
)
from dptune.tracking.model_versions import (
    CHALLENGER,
    CHAMPION,
    register_prompt,
    register_run_folder,
    registered_model_name,
)
from dptune.tracking.promotion import PromotionResult, current_champion, promote, set_challenger
from dptune.tracking.pyfunc import PromptModel, log_prompt_model
from dptune.tracking.runs import log_run_folder, track_run_folder
from dptune.tracking.serving_checks import servable_uri
from dptune.tracking.stage_results import log_stage_results

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PromotionResult",
    "PromptModel",
    "check_tracking_access",
    "check_tracking_server",
    "configure",
    "current_champion",
    "ensure_experiment",
    "experiment_name",
    "initialise_store",
    "log_prompt_model",
    "log_run_folder",
    "log_stage_results",
    "promote",
    "register_prompt",
    "register_run_folder",
    "registered_model_name",
    "servable_uri",
    "set_challenger",
    "short_backbone_name",
    "track_run_folder",
    "tracking_uri",
]
