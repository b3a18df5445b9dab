"""build_backbone: model resolution, kind detection and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dptune.backbones.encoder import EncoderBackbone
from dptune.backbones.loader import build_backbone, load_tokenizer, resolve_model
from dptune.backbones.seq2seq import Seq2SeqBackbone
from dptune.config import TrainConfig
from dptune.errors import DptuneError


def config(model: Path | str, **overrides: object) -> TrainConfig:
    values = dict(task="cb", model=str(model), data_dir="d", out="o", prompt_length=4)
    return TrainConfig(**{**values, **overrides})


def test_auto_picks_the_kind_from_the_model_config(tiny_t5_dir: Path, tiny_bert_dir: Path) -> None:
    assert isinstance(build_backbone(config(tiny_t5_dir)), Seq2SeqBackbone)
    assert isinstance(build_backbone(config(tiny_bert_dir), num_classes=3), EncoderBackbone)


@pytest.mark.parametrize("name", ["/no/such/model", "./missing-model", "~/nope/a/b"])
def test_missing_local_folder(name: str) -> None:
    with pytest.raises(DptuneError, match=f"^model: {name} does not exist$"):
        build_backbone(config(name))


def test_unreachable_hub_id_is_one_line() -> None:
    # conftest sets HF_HUB_OFFLINE, so this fails fast without touching the network
    with pytest.raises(DptuneError, match=r"^model: cannot load the config of someone/") as err:
        build_backbone(config("someone/absent-model"))
    assert "\n" not in str(err.value)


def test_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(DptuneError, match=r"^model: cannot load the config of "):
        build_backbone(config(tmp_path))
    (tmp_path / "file.bin").write_bytes(b"")
    with pytest.raises(DptuneError, match="is not a folder"):
        resolve_model(str(tmp_path / "file.bin"))


def test_forced_kind_must_match(tiny_t5_dir: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(
        DptuneError, match=r"^backbone: .* is an encoder model \(bert\), not seq2seq"
    ):
        build_backbone(config(tiny_bert_dir, backbone="seq2seq"))
    with pytest.raises(DptuneError, match=r"^backbone: .* is a seq2seq model \(t5\), not encoder"):
        build_backbone(config(tiny_t5_dir, backbone="encoder"))


LABEL_SETS = [
    ("cb", "paper", 3),
    ("rte", "natural", 2),
    ("copa", "natural", 2),
    ("wsc", "natural", 2),
]


@pytest.mark.parametrize(("task", "fmt", "classes"), LABEL_SETS)
def test_linear_head_defaults_to_the_task_label_set(
    tiny_bert_dir: Path, task: str, fmt: str, classes: int
) -> None:
    backbone = build_backbone(config(tiny_bert_dir, task=task, format=fmt))
    assert backbone.head.out_features == classes


def test_encoder_limits(tiny_bert_dir: Path) -> None:
    with pytest.raises(DptuneError, match="^head: record in the paper format has no fixed label"):
        build_backbone(config(tiny_bert_dir, task="record"), num_classes=3)
    with pytest.raises(DptuneError, match="^head: wsc in the paper format has no fixed label"):
        build_backbone(config(tiny_bert_dir, task="wsc"))
    assert build_backbone(config(tiny_bert_dir, task="record", head="similarity")).head is None
    with pytest.raises(DptuneError, match="^max_source_length: 256 source tokens \\+ 300 prompt"):
        build_backbone(config(tiny_bert_dir, prompt_length=300), num_classes=3)


def test_load_tokenizer_offline(tiny_t5_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_t5_dir))
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
