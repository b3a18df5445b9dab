from pathlib import Path

import pytest
import yaml
from stage_helpers import REPO_ROOT, cell_config, profile

from dptune.config import TrainConfig
from dptune.errors import DptuneError
from dptune.prompts.registry import get_method
from dptune.stages.params import load_profile, parse_profile, run_name, sample_path
from dptune.stages.plan import Plan

PROFILES = sorted((REPO_ROOT / "profiles").glob("*.yaml"))


def _keys(data: dict, prefix: str = "") -> set[str]:
    """Top-level and second-level keys (task_overrides and configs may differ in content)."""
    keys = set()
    for key, value in data.items():
        keys.add(prefix + key)
        if isinstance(value, dict) and key not in ("train", "task_overrides", "config", "sweeps"):
            keys |= _keys(value, prefix + key + ".")
    return keys


def test_profiles_exist_and_validate():
    names = {path.stem for path in PROFILES}
    assert {"default", "paper", "smoke"} <= names
    for path in [REPO_ROOT / "params.yaml", *PROFILES]:
        params = load_profile(path)
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
    params = load_profile(REPO_ROOT / "profiles" / "paper.yaml")
    assert len(params.tasks) == 8 and params.methods[:3] == ["dpt", "pt", "residual"]
    # the later methods are extra rows, not the paper's: 8 x 3 x 3 = 72 paper cells, 120 in all
    assert params.methods[3:] == ["ulpt", "dept"]
    assert not any(get_method(m).paper for m in params.methods[3:])
    assert len(Plan(params, "paper").grid()) == 120
    assert params.fields_for("cb", "ulpt")["rank"] == 2
    assert params.fields_for("cb", "dept")["rank"] == 30  # train.dept.rank
    assert len(params.seeds) == 3
    cfg = cell_config(params, task="cb", method="dpt", seed=0, model=params.model, data_dir="d",
                      out="o")  # fmt: skip
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate) == (100, 16, 0.3)  # `-ts 16`
    assert (cfg.precision, cfg.max_target_length) == ("fp32", 128)  # as the official code
    assert (cfg.prompt_length, cfg.method_config.bottleneck, cfg.device) == (100, 10, "cuda")
    assert "t5-base" in params.model


def test_llm_profiles_split_the_paper_rows_from_the_later_ones():
    rows = {}
    for name in ("llm", "llm-later"):
        params = load_profile(REPO_ROOT / "profiles" / f"{name}.yaml")
        assert params.model == "smollm2-135m" and params.tasks == ["cb"]
        assert params.report.baselines == ["majority", "zero-shot"] and len(params.seeds) == 3
        rows[name] = params.methods
        cfg = cell_config(params, task="cb", method=params.methods[0], seed=0, model=params.model,
                          data_dir="d", out="o")  # fmt: skip
        assert (cfg.prompt_length, cfg.epochs, cfg.precision, cfg.decode) == (
            100,
            2,
            "bf16",
            "rank",
        )
    assert rows["llm"] == ["dpt", "pt", "residual"]
    assert all(get_method(m).paper for m in rows["llm"])
    assert not any(get_method(m).paper for m in rows["llm-later"])  # ulpt, dept, lora


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
        ({"methods": ["ia3"]}, "methods.0: unknown method 'ia3'; valid: dpt, pt, residual, fine"),
        ({"methods": ["dpt", "probe"]}, "methods.1: probe runs in the probe stage"),
        (
            {"train": {"epochs": 1, "bottleneck": 2}},
            "test profile: train.bottleneck: applies to dpt only; put it under train.dpt",
        ),
        (
            {"train": {"pt_init": "random"}},
            "train.pt_init: applies to pt, residual, probe only; put it under train.pt or "
            "train.residual",
        ),
        (
            {"task_overrides": {"rte": {"residual_hidden": 8}}},
            "task_overrides.rte.residual_hidden: applies to residual only; "
            "put it under task_overrides.rte.residual",
        ),
        ({"train": {"pt": {"bottleneck": 2}}}, "train.pt.bottleneck: applies to method dpt only"),
        ({"train": {"dpt": {"epochs": 2}}}, "train.dpt.epochs: not a field of dpt; fields of"),
        ({"train": {"dpt": {"width": 2}}}, "train.dpt.width: not a field of dpt (its fields: bot"),
        ({"train": {"finetune": {"pt_init": "vocab"}}}, "train.finetune.pt_init: applies to"),
        ({"train": {"dpt": 2}}, "train.dpt: expected a mapping"),
        ({"train": {"probe": {"pt_init": "random"}}}, "train.probe: probe runs in the probe stage"),
        (
            {"probe": {"task": "cb", "seed": 0, "config": {"bottleneck": 2}}},
            "probe.config: bottleneck: applies to method dpt only, not probe",
        ),
        ({"few_shot": {"shots": [8], "train_on": 16}}, "train_on: 16 is not in few_shot.shots"),
        ({"seeds": []}, "seeds: must not be empty"),
        (
            {
                "mlflow": {
                    "track": True,
                    "register_prompts": True,
                    "auto_promote": True,
                    "promotion_margin": -0.1,
                }
            },
            "mlflow.promotion_margin",
        ),  # fmt: skip
        ({"methods": ["dpt", "dpt"]}, "methods: repeats a value"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_profiles_fail_in_one_line_naming_the_field(override, needle):
    with pytest.raises(DptuneError) as err:
        profile(**override)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_a_method_block_reaches_only_its_method_cells():
    params = profile(
        train={"epochs": 1, "dpt": {"bottleneck": 2}, "residual": {"residual_hidden": 8}},
        task_overrides={"rte": {"epochs": 3, "dpt": {"bottleneck": 5, "init": "normal"}}},
        tasks=["cb", "rte"],
        methods=["dpt", "pt", "residual"],
    )
    assert params.fields_for("cb", "dpt") == {"epochs": 1, "bottleneck": 2}
    assert params.fields_for("RTE", "dpt") == {"epochs": 3, "bottleneck": 5, "init": "normal"}
    assert params.fields_for("rte", "pt") == {"epochs": 3}
    assert params.fields_for("cb", "residual") == {"epochs": 1, "residual_hidden": 8}
    assert params.fields_for("cb", "probe") == {"epochs": 1}  # the probe takes probe.config

    def cell(task: str, method: str) -> TrainConfig:
        return cell_config(params, task=task, method=method, seed=0, model="m", data_dir="d",
                           out="o")  # fmt: skip

    assert cell("cb", "dpt").method_config.model_dump() == {
        "bottleneck": 2, "init": "uniform", "init_std": 0.5,
    }  # fmt: skip
    assert cell("rte", "dpt").method_config.bottleneck == 5
    assert cell("cb", "pt").method_config.model_dump() == {"pt_init": "vocab"}
    assert cell("cb", "residual").method_config.residual_hidden == 8
    assert cell("cb", "finetune").method_config.model_dump() == {}
    assert params.task_formats() == {"cb": "paper", "rte": "paper"}


def test_probe_config_may_set_the_probe_s_own_fields():
    params = profile(probe={"task": "cb", "seed": 0, "config": {"epochs": 2, "pt_init": "random"}})
    cfg = cell_config(params, task="cb", method="probe", seed=0, model="m", data_dir="d", out="o",
                      extra=params.probe.config)  # fmt: skip
    assert cfg.method_config.pt_init == "random" and cfg.epochs == 2


def test_the_profiles_keep_their_effective_values():
    """Moving bottleneck and residual_hidden into method blocks changed no cell's values."""
    smoke = load_profile(REPO_ROOT / "profiles" / "smoke.yaml")
    assert smoke.fields_for("cb", "dpt")["bottleneck"] == 2
    assert smoke.fields_for("cb", "residual")["residual_hidden"] == 8
    assert "bottleneck" not in smoke.fields_for("cb", "pt")
    paper = load_profile(REPO_ROOT / "profiles" / "paper.yaml")
    for task in paper.tasks:
        assert paper.fields_for(task, "dpt")["bottleneck"] == 10


def test_an_unknown_cell_method_lists_the_valid_ones():
    with pytest.raises(DptuneError, match=r"method: unknown method 'ia3'; valid: dpt, pt"):
        cell_config(profile(), task="cb", method="ia3", seed=0, model="m", data_dir="d", out="o")


def test_a_bad_cell_value_names_the_profile_and_cell():
    params = profile(task_overrides={"cb": {"prompt_length": 0}})
    with pytest.raises(DptuneError, match=r"test profile \(cb-dpt-s0\): prompt_length"):
        cell_config(params, task="cb", method="dpt", seed=0, model="m", data_dir="d", out="o",
                    source="test profile")  # fmt: skip


def test_a_missing_key_is_reported():
    with pytest.raises(DptuneError, match="mlflow"):
        parse_profile({k: v for k, v in profile().model_dump().items() if k != "mlflow"})


def test_run_names():
    assert run_name("cb", "dpt", 0) == "cb-dpt-s0"


def test_data_tasks_and_their_formats():
    params = profile(tasks=["rte", "wic"], task_overrides={"wic": {"format": "paper"}})
    assert params.data_tasks() == ["rte", "wic", "cb"]  # the probe trains on cb
    assert params.task_formats() == {"rte": "natural", "wic": "paper", "cb": "natural"}
    bare = profile(train={"epochs": 1})
    assert bare.task_formats() == {"cb": TrainConfig.model_fields["format"].default}


def test_a_profile_asks_for_local_processes_per_cell_and_a_sweep_cannot_vary_them():
    params = profile(train={**profile().train, "processes": 2})
    cfg = cell_config(params, task="cb", method="pt", seed=0, model="m", data_dir="d", out="o")
    assert cfg.processes == 2  # the train stage launches torchrun with 2 ranks for the cell
    from dptune.stages.params import sweep_fields

    assert "processes" not in sweep_fields()
