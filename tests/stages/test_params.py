from pathlib import Path

import pytest
import yaml
from stage_helpers import REPO_ROOT, profile

from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.stages.params import cell_config, load_params, parse_params, run_name, sample_path

PROFILES = sorted((REPO_ROOT / "profiles").glob("*.yaml"))


def _keys(data: dict, prefix: str = "") -> set[str]:
    """Top-level and second-level keys (task_overrides and configs may differ in content)."""
    keys = set()
    for key, value in data.items():
        keys.add(prefix + key)
        if isinstance(value, dict) and key not in ("train", "task_overrides", "config"):
            keys |= _keys(value, prefix + key + ".")
    return keys


def test_profiles_exist_and_validate():
    names = {path.stem for path in PROFILES}
    assert {"default", "paper", "smoke"} <= names
    for path in [REPO_ROOT / "params.yaml", *PROFILES]:
        params = load_params(path)
        assert params.tasks and params.methods and params.seeds


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_has_the_keys_of_params_yaml(path: Path):
    reference = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert _keys(yaml.safe_load(path.read_text())) == _keys(reference)
    # dvc.yaml tracks train.format as a parameter, so every profile must set it
    assert "format" in yaml.safe_load(path.read_text())["train"]


def test_default_profile_is_params_yaml():
    default = yaml.safe_load((REPO_ROOT / "profiles" / "default.yaml").read_text())
    assert default == yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def test_paper_profile_follows_the_paper():
    params = load_params(REPO_ROOT / "profiles" / "paper.yaml")
    assert len(params.tasks) == 8 and params.methods == ["dpt", "pt", "residual"]
    assert len(params.seeds) == 3
    cfg = cell_config(params, task="cb", method="dpt", seed=0, model=params.model, data_dir="d",
                      out="o")  # fmt: skip
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate) == (100, 32, 0.3)
    assert (cfg.prompt_length, cfg.bottleneck, cfg.device) == (100, 10, "cuda")
    assert "t5-base" in params.model


def test_cell_config_layers_shared_task_and_cell_fields(tmp_path):
    params = profile(task_overrides={"cb": {"epochs": 3}})
    cfg = cell_config(params, task="CB", method="pt", seed=2, model="m", data_dir="d", out="o")
    assert isinstance(cfg, TrainConfig)
    assert (cfg.task, cfg.method, cfg.seed, cfg.model, cfg.out) == ("cb", "pt", 2, "m", "o")
    assert cfg.epochs == 3  # the task override beats the shared value
    assert cfg.prompt_length == 4  # shared
    assert cfg.weight_decay == TrainConfig.model_fields["weight_decay"].default  # untouched
    assert cfg.sample is None


def test_few_shot_training_points_at_the_sample_file():
    params = profile(few_shot={"shots": [8, 16], "train_on": 16})
    cfg = cell_config(params, task="cb", method="dpt", seed=1, model="m", data_dir="d", out="o",
                      samples_dir="s")  # fmt: skip
    assert cfg.sample == str(sample_path("s", "cb", 16, 1)) == str(Path("s/cb/k16-s1.json"))
    with pytest.raises(DptuneError, match="no samples folder"):
        cell_config(params, task="cb", method="dpt", seed=1, model="m", data_dir="d", out="o")


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"train": {"seed": 3}}, "train: 'seed' is set by the pipeline"),
        ({"train": {"epoch": 3}}, "train: 'epoch' is not a TrainConfig field"),
        ({"tasks": ["cb", "mnli"]}, "tasks: unknown task 'mnli'"),
        ({"task_overrides": {"mnli": {}}}, "task_overrides: unknown task 'mnli'"),
        ({"methods": ["lora"]}, "methods.0"),
        ({"few_shot": {"shots": [8], "train_on": 16}}, "train_on: 16 is not in few_shot.shots"),
        ({"seeds": []}, "seeds: must not be empty"),
        ({"methods": ["dpt", "dpt"]}, "methods: repeats a value"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_profiles_fail_in_one_line_naming_the_field(override, needle):
    with pytest.raises(DptuneError) as err:
        profile(**override)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_cell_value_names_the_profile_and_cell():
    params = profile(task_overrides={"cb": {"prompt_length": 0}})
    with pytest.raises(DptuneError, match=r"test profile \(cb-dpt-s0\): prompt_length"):
        cell_config(params, task="cb", method="dpt", seed=0, model="m", data_dir="d", out="o",
                    source="test profile")  # fmt: skip


def test_a_missing_key_is_reported():
    with pytest.raises(DptuneError, match="mlflow"):
        parse_params({k: v for k, v in profile().model_dump().items() if k != "mlflow"})


def test_run_names():
    assert run_name("cb", "dpt", 0) == "cb-dpt-s0"


def test_data_tasks_and_their_formats():
    params = profile(tasks=["rte", "wic"], task_overrides={"wic": {"format": "paper"}})
    assert params.data_tasks() == ["rte", "wic", "cb"]  # the probe trains on cb
    assert params.task_formats() == {"rte": "natural", "wic": "paper", "cb": "natural"}
    bare = profile(train={"epochs": 1})
    assert bare.task_formats() == {"cb": TrainConfig.model_fields["format"].default}
