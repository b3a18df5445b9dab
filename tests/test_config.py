import pytest
import yaml

from dptune.config import TrainConfig, load_yaml, make_config, make_stored_config
from dptune.errors import DptuneError

BASE = {"task": "CB", "model": "m", "data_dir": "d", "out": "o"}


def test_defaults_follow_the_paper():
    cfg = make_config(BASE)
    assert cfg.task == "cb"
    assert cfg.method == "dpt" and cfg.prompt_length == 100
    assert (cfg.method_config.bottleneck, cfg.method_config.init) == (10, "uniform")
    assert "bottleneck" not in TrainConfig.model_fields  # it lives in the method's config
    assert cfg.learning_rate == 0.3
    assert (cfg.weight_decay, cfg.warmup_ratio, cfg.max_grad_norm) == (1e-5, 0.1, 1.0)
    assert cfg.max_source_length == 256
    assert make_config({**BASE, "method": "finetune"}).learning_rate == 1e-4


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"bottleneck": 0}, "bottleneck"),
        ({"prompt_length": -1}, "prompt_length"),
        ({"method": "ia3"}, "method"),
        ({"task": "mnli"}, "unknown task 'mnli'"),
        ({"shots": 8, "sample": "s.json"}, "not both"),
        ({"epochs": 1, "colour": "red"}, "colour"),
    ],
)
def test_invalid_config_is_one_line(override, needle):
    with pytest.raises(DptuneError) as info:
        make_config({**BASE, **override})
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_yaml_round_trip(tmp_path):
    cfg = make_config({**BASE, "bottleneck": 4})
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = TrainConfig(**load_yaml(path))
    assert again.method_config.bottleneck == 4 and again.lr == 0.3
    assert yaml.safe_load(path.read_text())["method_config"]["bottleneck"] == 4


def test_an_unknown_method_is_refused_with_the_valid_list():
    with pytest.raises(DptuneError) as info:
        make_config({**BASE, "method": "ia3"})
    assert str(info.value) == (
        "config: method: unknown method 'ia3'; valid: dpt, pt, residual, probe, finetune, "
        "ulpt, dept, lora"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"method": "pt", "bottleneck": 2},
            "bottleneck: applies to method dpt only (method is pt)",
        ),
        ({"method": "finetune", "init": "normal"}, "init: applies to method dpt only"),
        ({"method": "dpt", "residual_hidden": 8}, "residual_hidden: applies to method residual"),
        ({"method": "dpt", "pt_init": "random"}, "pt_init: applies to methods pt, residual, probe"),
        ({"method": "residual", "residual_hidden": 0}, "residual_hidden: Input should be greater"),
        ({"method": "pt", "pt_init": "zeros"}, "pt_init: Input should be 'vocab' or 'random'"),
    ],
)
def test_a_method_field_is_refused_for_another_method_in_one_line(values, message):
    with pytest.raises(DptuneError) as info:
        make_config({**BASE, **values})
    assert str(info.value).startswith(f"config: {message}")
    assert "\n" not in str(info.value)


def test_method_config_fills_in_the_method_defaults():
    residual = make_config({**BASE, "method": "residual", "residual_hidden": 8}).method_config
    assert residual.model_dump() == {"residual_hidden": 8, "pt_init": "vocab"}
    dpt = make_config({**BASE, "init": "normal"}).method_config
    assert dpt.model_dump() == {"bottleneck": 10, "init": "normal", "init_std": 0.5}
    assert make_config({**BASE, "method": "finetune"}).method_config.model_dump() == {}


@pytest.mark.parametrize(
    ("method", "own"),
    [
        ("dpt", {"bottleneck": 10, "init": "uniform", "init_std": 0.5}),
        ("pt", {"pt_init": "vocab"}),
        ("residual", {"pt_init": "vocab", "residual_hidden": 400}),
        ("probe", {"pt_init": "vocab"}),
        ("finetune", {}),
    ],
)
def test_stored_config_holds_the_method_fields_with_their_values_and_loads_back(
    tmp_path, method, own
):
    cfg = make_config({**BASE, "method": method})
    stored = yaml.safe_load(cfg.to_yaml())
    assert stored["method_config"] == own  # one object, chosen by `method`
    method_fields = {"bottleneck", "init", "init_std", "pt_init", "residual_hidden"}
    assert not method_fields & set(stored)
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = make_config(load_yaml(path), source=str(path))
    assert again.resolved() == cfg.resolved()
    assert again.method_config == cfg.method_config


def test_a_config_stored_before_the_registry_still_loads():
    old = {**BASE, "method": "pt", "bottleneck": 10, "init": "uniform", "init_std": 0.5}
    old.update(pt_init="random", residual_hidden=400)
    cfg = make_stored_config(old)
    assert cfg.method_config.model_dump() == {"pt_init": "random"}
    with pytest.raises(DptuneError, match="bottleneck: applies to method dpt only"):
        make_config(old)  # what a user gives is still checked


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: cb\nmodel: [unclosed\n")
    with pytest.raises(DptuneError, match=r"c.yaml:\d+: invalid YAML"):
        load_yaml(path)


def test_a_flat_config_stored_by_the_previous_layout_loads_into_method_config():
    """config.yaml as main wrote it before `method_config`: the method's fields flat."""
    old = {**BASE, "method": "dpt", "bottleneck": 4, "init": "normal", "init_std": 0.2}
    cfg = make_stored_config(old)
    assert cfg.method_config.model_dump() == {"bottleneck": 4, "init": "normal", "init_std": 0.2}
    assert cfg.resolved()["method_config"]["bottleneck"] == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method_config": {"bottleneck": 0}}, "config: bottleneck: Input should be greater"),
        ({"method_config": {"colour": 1}}, "config: method_config.colour: not a field of dpt"),
        ({"method_config": [1, 2]}, "config: method_config: expected a mapping"),
        ({"method": "pt", "method_config": {"bottleneck": 2}}, "config: method_config.bottleneck"),
    ],
)
def test_a_bad_method_config_is_one_line_naming_the_field(values, message):
    with pytest.raises(DptuneError) as info:
        make_config({**BASE, **values})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_stored_config_the_layout_cannot_read_names_file_and_field(tmp_path):
    from dptune.run_folder import RunFolder

    folder = RunFolder(tmp_path)
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({**BASE, "method": "dpt", "method_config": {"bottleneck": "wide"}})
    )
    with pytest.raises(DptuneError) as info:
        folder.read_train_config()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'config.yaml'}: bottleneck: ") and "\n" not in message


def test_method_value_reads_flat_names_from_either_place():
    cfg = make_config({**BASE, "bottleneck": 3})
    assert cfg.method_value("bottleneck") == 3 and cfg.method_value("epochs") == 10
