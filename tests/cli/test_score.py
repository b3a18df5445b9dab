"""`dptune score`: metrics as one JSON line, exit code 2 with one line on bad input, and
agreement with an independent implementation of the official metrics on random predictions."""

from __future__ import annotations

import json
import os
import random
import re
import string
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from dptune.cli.main import main
from helpers.paths import SUPERGLUE_DIR as SUPERGLUE
from helpers.paths import SUPERGLUE_SAMPLES_DIR as SAMPLES

needs_shared = pytest.mark.skipif(not SUPERGLUE.is_dir(), reason="shared SuperGLUE data not found")
pytestmark = needs_shared


def run_score(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run `dptune score ...` through the real entry point, in process."""
    monkeypatch.setattr(sys, "argv", ["dptune", "score", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _raw(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ---- an independent implementation of the official metrics, on the raw files ------------------


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _squad_normalise(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _squad_f1(prediction: str, answer: str) -> float:
    p, g = _squad_normalise(prediction).split(), _squad_normalise(answer).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def expected_metrics(task: str, gold: list[dict], pred: list[dict]) -> dict[str, float]:
    if task == "multirc":
        gold_labels = {
            (r["idx"], q["idx"], a["idx"]): a["label"]
            for r in gold for q in r["passage"]["questions"] for a in q["answers"]
        }  # fmt: skip
        pred_labels = {
            (r["idx"], q["idx"], a["idx"]): a["label"]
            for r in pred for q in r["passage"]["questions"] for a in q["answers"]
        }  # fmt: skip
        tp = sum(g == 1 and pred_labels[k] == 1 for k, g in gold_labels.items())
        fp = sum(g == 0 and pred_labels[k] == 1 for k, g in gold_labels.items())
        fn = sum(g == 1 and pred_labels[k] == 0 for k, g in gold_labels.items())
        questions: dict[tuple, bool] = defaultdict(lambda: True)
        for (p, q, a), g in gold_labels.items():
            questions[(p, q)] &= pred_labels[(p, q, a)] == g
        return {"f1a": _f1(tp, fp, fn), "em": sum(questions.values()) / len(questions)}
    if task == "record":
        answers = {qa["idx"]: [a["text"] for a in qa["answers"]] for r in gold for qa in r["qas"]}
        predicted = {r["idx"]: r["label"] for r in pred}
        f1 = [max(_squad_f1(predicted[q], a) for a in golds) for q, golds in answers.items()]
        em = [
            max(float(_squad_normalise(predicted[q]) == _squad_normalise(a)) for a in golds)
            for q, golds in answers.items()
        ]
        return {"f1": sum(f1) / len(f1), "em": sum(em) / len(em)}
    predicted = {r["idx"]: r["label"] for r in pred}
    pairs = [(r["label"], predicted[r["idx"]]) for r in gold]
    scores = {"accuracy": sum(g == p for g, p in pairs) / len(pairs)}
    if task == "cb":
        per_class = []
        for label in ("entailment", "contradiction", "neutral"):
            tp = sum(g == label and p == label for g, p in pairs)
            fp = sum(g != label and p == label for g, p in pairs)
            fn = sum(g == label and p != label for g, p in pairs)
            per_class.append(_f1(tp, fp, fn))
        scores["f1_macro"] = sum(per_class) / 3
    return scores


def random_predictions(task: str, gold: list[dict], rng: random.Random) -> list[dict]:
    if task == "multirc":
        return [
            {
                "idx": r["idx"],
                "passage": {
                    "questions": [
                        {
                            "idx": q["idx"],
                            "answers": [
                                {"idx": a["idx"], "label": a["label"] if rng.random() < 0.7 else
                                 1 - a["label"]}
                                for a in q["answers"]
                            ],
                        }
                        for q in r["passage"]["questions"]
                    ]
                },
            }
            for r in gold
        ]  # fmt: skip
    if task == "record":
        out = []
        for r in gold:
            text = r["passage"]["text"]
            entities = [text[e["start"] : e["end"] + 1] for e in r["passage"]["entities"]]
            for qa in r["qas"]:
                guess = rng.choice([*entities, qa["answers"][0]["text"], "the " + entities[0]])
                out.append({"idx": qa["idx"], "label": guess})
        return out
    choices = {
        "boolq": [True, False],
        "wic": [True, False],
        "wsc": [True, False],
        "cb": ["entailment", "contradiction", "neutral"],
        "rte": ["entailment", "not_entailment"],
        "copa": [0, 1],
    }[task]
    records = [{"idx": r["idx"], "label": rng.choice(choices)} for r in gold]
    rng.shuffle(records)  # order does not matter
    return records


CASES = [
    ("boolq", SUPERGLUE / "BoolQ" / "val.jsonl"),
    ("cb", SUPERGLUE / "CB" / "val.jsonl"),
    ("copa", SUPERGLUE / "COPA" / "val.jsonl"),
    ("multirc", SUPERGLUE / "MultiRC" / "val.jsonl"),
    ("rte", SUPERGLUE / "RTE" / "val.jsonl"),
    ("wic", SUPERGLUE / "WiC" / "val.jsonl"),
    ("wsc", SUPERGLUE / "WSC" / "val.jsonl"),
    ("record", SAMPLES / "ReCoRD" / "train.jsonl"),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("task", "gold"), CASES)
def test_score_agrees_with_an_independent_implementation(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    task: str,
    gold: Path,
    seed: int,
) -> None:
    raw_gold = _raw(gold)
    pred = random_predictions(task, raw_gold, random.Random(seed))
    path = _write(tmp_path / "pred.jsonl", pred)
    code, out, err = run_score(
        monkeypatch, capsys, "--task", task, "--gold", gold, "--predictions", path
    )
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    scores = json.loads(out)
    expected = expected_metrics(task, raw_gold, pred)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-12), name
        assert 0.0 <= scores[name] <= 1.0


def test_boolean_strings_score_like_booleans(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gold = SUPERGLUE / "WSC" / "val.jsonl"
    pred = _write(
        tmp_path / "p.jsonl",
        [{"idx": r["idx"], "label": str(r["label"]).lower()} for r in _raw(gold)],
    )
    code, out, _ = run_score(
        monkeypatch, capsys, "--task", "WSC", "--gold", gold, "--predictions", pred
    )
    assert code == 0 and json.loads(out) == {"accuracy": 1.0}


def _assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err


def _cb_predictions(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "cb-pred.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_broken_prediction_line(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pred = _cb_predictions(tmp_path, ['{"idx": 0, "label": "neutral"}', '{"idx": 1, "label"'])
    code, out, err = run_score(
        monkeypatch,
        capsys,
        "--task",
        "cb",
        "--gold",
        SUPERGLUE / "CB" / "val.jsonl",
        "--predictions",
        pred,
    )
    _assert_one_line_error(code, out, err, f"{pred}:2: invalid JSON")


def test_broken_gold_line(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = (SUPERGLUE / "CB" / "val.jsonl").read_text(encoding="utf-8").splitlines()
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join([*lines[:3], lines[3][:-5], *lines[4:]]) + "\n", encoding="utf-8")
    pred = _cb_predictions(tmp_path, ['{"idx": 0, "label": "neutral"}'])
    code, out, err = run_score(
        monkeypatch, capsys, "--task", "cb", "--gold", gold, "--predictions", pred
    )
    _assert_one_line_error(code, out, err, f"{gold}:4: invalid JSON")


def test_missing_idx(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pred = _cb_predictions(tmp_path, ['{"idx": 0, "label": "neutral"}', '{"label": "neutral"}'])
    code, out, err = run_score(
        monkeypatch,
        capsys,
        "--task",
        "cb",
        "--gold",
        SUPERGLUE / "CB" / "val.jsonl",
        "--predictions",
        pred,
    )
    _assert_one_line_error(code, out, err, f"{pred}:2:", 'missing "idx"')


def test_duplicated_idx(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pred = _cb_predictions(tmp_path, ['{"idx": 5, "label": "neutral"}'] * 2)
    code, out, err = run_score(
        monkeypatch,
        capsys,
        "--task",
        "cb",
        "--gold",
        SUPERGLUE / "CB" / "val.jsonl",
        "--predictions",
        pred,
    )
    _assert_one_line_error(code, out, err, f"{pred}:2:", "duplicated idx 5")


def test_missing_prediction_names_the_idx(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gold = SUPERGLUE / "CB" / "val.jsonl"
    pred = _write(
        tmp_path / "p.jsonl", [{"idx": r["idx"], "label": r["label"]} for r in _raw(gold)[:-1]]
    )
    code, out, err = run_score(
        monkeypatch, capsys, "--task", "cb", "--gold", gold, "--predictions", pred
    )
    _assert_one_line_error(code, out, err, "idx 55: no prediction")


def test_invalid_label(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pred = _cb_predictions(tmp_path, ['{"idx": 3, "label": "maybe"}'])
    code, out, err = run_score(
        monkeypatch,
        capsys,
        "--task",
        "cb",
        "--gold",
        SUPERGLUE / "CB" / "val.jsonl",
        "--predictions",
        pred,
    )
    _assert_one_line_error(code, out, err, f"{pred}:1:", 'idx 3: invalid label "maybe"')


def test_missing_gold_file(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pred = _cb_predictions(tmp_path, ['{"idx": 0, "label": "neutral"}'])
    gold = tmp_path / "nowhere.jsonl"
    code, out, err = run_score(
        monkeypatch, capsys, "--task", "cb", "--gold", gold, "--predictions", pred
    )
    _assert_one_line_error(code, out, err, f"{gold}: no such file")


def test_unknown_task_lists_the_valid_ones(monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pred = _cb_predictions(tmp_path, ['{"idx": 0, "label": "neutral"}'])
    code, out, err = run_score(
        monkeypatch,
        capsys,
        "--task",
        "squad",
        "--gold",
        SUPERGLUE / "CB" / "val.jsonl",
        "--predictions",
        pred,
    )
    _assert_one_line_error(
        code, out, err, "unknown task 'squad'", "boolq, cb, copa, multirc, record, rte, wic, wsc"
    )


def test_the_installed_command_end_to_end(tmp_path: Path, dptune_cache: Path) -> None:
    gold = SUPERGLUE / "CB" / "val.jsonl"
    pred = _write(
        tmp_path / "p.jsonl", [{"idx": r["idx"], "label": r["label"]} for r in _raw(gold)]
    )
    env = {**os.environ, "DPTUNE_CACHE": str(dptune_cache)}
    command = [sys.executable, "-m", "dptune.cli.main", "score", "--task", "cb"]
    ok = subprocess.run(
        [*command, "--gold", str(gold), "--predictions", str(pred)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert (ok.returncode, ok.stdout) == (0, '{"accuracy": 1.0, "f1_macro": 1.0}\n')
    broken = _write(tmp_path / "broken.jsonl", [{"label": "neutral"}])
    bad = subprocess.run(
        [*command, "--gold", str(gold), "--predictions", str(broken)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr == f'error: {broken}:1: missing "idx"\n'
