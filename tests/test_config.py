import pytest

from dptune.config import TrainConfig, load_yaml, make_config
from dptune.errors import DptuneError

BASE = {"task": "CB", "model": "m", "data_dir": "d", "out": "o"}


def test_defaults_follow_the_paper():
    cfg = make_config(BASE)
    assert cfg.task == "cb"
    assert (cfg.prompt_length, cfg.bottleneck, cfg.init) == (100, 10, "uniform")
    assert cfg.learning_rate == 0.3
    assert (cfg.weight_decay, cfg.warmup_ratio, cfg.max_grad_norm) == (1e-5, 0.1, 1.0)
    assert cfg.max_source_length == 256
    assert make_config({**BASE, "method": "finetune"}).learning_rate == 1e-4


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"bottleneck": 0}, "bottleneck"),
        ({"prompt_length": -1}, "prompt_length"),
        ({"method": "lora"}, "method"),
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
    assert again.bottleneck == 4 and again.lr == 0.3


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: cb\nmodel: [unclosed\n")
    with pytest.raises(DptuneError, match=r"c.yaml:\d+: invalid YAML"):
        load_yaml(path)
