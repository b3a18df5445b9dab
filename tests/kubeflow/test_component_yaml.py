from pathlib import Path

from kfp import components

from dptune.kfp.components import COMPONENTS, compile_components

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_committed_component_yaml_is_fresh_and_loadable(tmp_path):
    compile_components(str(tmp_path))
    for name in COMPONENTS:
        committed = REPO_ROOT / "components" / name / "component.yaml"
        fresh = tmp_path / name / "component.yaml"
        assert committed.read_text() == fresh.read_text(), (
            f"stale {committed}: make pipeline-compile"
        )
        loaded = components.load_component_from_file(str(committed))
        assert loaded.name == name.replace("_", "-")  # KFP names train_job train-job
