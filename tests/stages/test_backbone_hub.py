"""The backbone stage against a hub: a local HTTP server plays huggingface.co (HF_ENDPOINT).

`dptune stage backbone` runs as a subprocess with HF_ENDPOINT set, so huggingface_hub's own
client talks real HTTP to the server: revision lookup, file tree, file downloads. The server
holds one repo with a tiny T5 at two commits; `main` points at the second.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from dptune.backbones.materialised import read_backbone
from dptune.errors import DptuneError
from dptune.stages.backbone import backbone_stage, model_of

REPO = "acme/t5-mini"
OLD_SHA = "1" * 40
MAIN_SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "smoke.yaml"


class FakeHub:
    """Just enough of the hub's HTTP API for `snapshot_download`: revision info, the file
    tree, and `resolve` downloads; every request is recorded."""

    def __init__(self, commits: dict[str, dict[str, bytes]], refs: dict[str, str]) -> None:
        self.commits, self.refs = commits, refs
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_GET(self) -> None:
                hub.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def commit(self, revision: str) -> str | None:
        sha = self.refs.get(revision, revision)
        return sha if sha in self.commits else None

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        api = f"/api/models/{REPO}/"
        if path.startswith(api + "revision/"):
            sha = self.commit(path.removeprefix(api + "revision/"))
            if sha is None:
                return self.send(handler, 404, b'{"error": "Revision Not Found"}', body,
                                 {"X-Error-Code": "RevisionNotFound"})  # fmt: skip
            files = [{"rfilename": name} for name in sorted(self.commits[sha])]
            info = {"id": REPO, "modelId": REPO, "sha": sha, "siblings": files, "private": False}
            return self.send(handler, 200, json.dumps(info).encode(), body)
        if path.startswith(api + "tree/"):
            sha = self.commit(path.removeprefix(api + "tree/").split("/")[0])
            if sha is None:
                return self.send(handler, 404, b"{}", body, {"X-Error-Code": "RevisionNotFound"})
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": _git_oid(data)}
                for name, data in sorted(self.commits[sha].items())
            ]
            return self.send(handler, 200, json.dumps(tree).encode(), body)
        prefix = f"/{REPO}/resolve/"
        if path.startswith(prefix):
            revision, _, name = path.removeprefix(prefix).partition("/")
            sha = self.commit(revision)
            if sha is None or name not in self.commits[sha]:
                return self.send(handler, 404, b"", body, {"X-Error-Code": "EntryNotFound"})
            data = self.commits[sha][name]
            headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_oid(data)}"'}
            return self.send(handler, 200, data, body, headers, "application/octet-stream")
        self.send(handler, 404, b"{}", body, {"X-Error-Code": "RepoNotFound"})

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        body: bool,
        headers: dict[str, str] | None = None,
        kind: str = "application/json",
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="module")
def hub(tiny_t5_dir: Path) -> Iterator[FakeHub]:
    files = {p.name: p.read_bytes() for p in tiny_t5_dir.iterdir() if p.is_file()}
    assert any(name.endswith(".safetensors") for name in files)
    main = {**files, "pytorch_model.bin": b"pickled weights: never downloaded", "README.md": b"x"}
    old = {**files, "NOTES.txt": b"the first commit"}
    with FakeHub({OLD_SHA: old, MAIN_SHA: main}, {"main": MAIN_SHA}) as server:
        yield server


def _stage(tmp_path: Path, hub: FakeHub, superglue: Path, **fields: object):
    profile = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    profile.update(model=REPO, **fields)
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(profile), encoding="utf-8")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path)}
    env.pop("TRANSFORMERS_OFFLINE", None)
    env.pop("HF_TOKEN", None)
    out = str(tmp_path / "backbone")
    cmd = [sys.executable, "-m", "dptune.cli.main", "stage", "backbone", "--out", out,
           "--params", str(params), "--data-dir", str(superglue)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two `dptune` subprocesses: about 15 s each
def test_a_hub_model_is_downloaded_once_at_a_recorded_commit(superglue, tmp_path, hub, tiny_t5_dir):
    done = _stage(tmp_path, hub, superglue)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "backbone"
    record = read_backbone(out)
    assert record["revision"] == MAIN_SHA  # `main` as it resolved, so the run can be pinned
    assert record["source"] == "hub" and record["kind"] == "seq2seq"
    assert record["folder"] == "t5-mini"  # the short name registered models carry
    folder = Path(model_of(REPO, out))
    assert folder == (out / "t5-mini").resolve()
    # safetensors present: the pickled copy of the weights and other formats stay on the hub
    assert not (folder / "pytorch_model.bin").exists() and not (folder / ".cache").exists()
    downloads = [r for r in hub.requests if r.startswith("GET ") and "/resolve/" in r]
    assert downloads and all(f"/resolve/{MAIN_SHA}/" in r for r in downloads)
    assert not any("pytorch_model.bin" in r for r in hub.requests if "/resolve/" in r)
    for name in ("config.json", "model.safetensors"):
        assert (folder / name).read_bytes() == (tiny_t5_dir / name).read_bytes()
    # the folder is all a later (offline) stage needs
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    AutoTokenizer.from_pretrained(folder, local_files_only=True)
    AutoModelForSeq2SeqLM.from_pretrained(folder, local_files_only=True)


@pytest.mark.slow
def test_a_pinned_revision_and_a_missing_one(superglue, tmp_path, hub):
    done = _stage(tmp_path / "old", hub, superglue, model_revision=OLD_SHA)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "old" / "backbone"
    assert read_backbone(out)["revision"] == OLD_SHA
    assert (out / "t5-mini" / "NOTES.txt").read_bytes() == b"the first commit"
    done = _stage(tmp_path / "none", hub, superglue, model_revision="v9")
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"cannot download {REPO} at revision v9" in line
    assert not any((tmp_path / "none" / "backbone").iterdir())  # nothing half-written


def test_offline_the_hub_is_never_reached(superglue, tmp_path, hub):
    before = len(hub.requests)
    with pytest.raises(DptuneError, match=f"model: cannot download {REPO} at revision main"):
        backbone_stage(REPO, tmp_path / "b", superglue)  # conftest: HF_HUB_OFFLINE=1
    assert len(hub.requests) == before and not (tmp_path / "b" / "t5-mini").exists()
