"""The served model's limits on the pyfunc itself (the HTTP side: test_hostile_serving.py): rows
and bytes over a limit are refused with a 413 naming it, before anything is tokenised; a
prediction past its deadline stops; a request's texts never reach the token cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dptune.errors import DptuneError
from dptune.tracking import serving_limits
from dptune.tracking.pyfunc import PromptModel

RECORD = {"premise": "It is raining, yes.", "hypothesis": "It rains."}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, tiny_t5_dir: Path) -> PromptModel:
    """A trained tiny CB prompt behind the pyfunc class, without MLflow logging."""
    from dptune.inference import Predictor
    from dptune.run import train
    from helpers.small_data import small_run_config, small_task_copy

    root = tmp_path_factory.mktemp("limits")
    train(
        small_run_config(tiny_t5_dir, small_task_copy(root / "data"), root / "run"), progress=False
    )
    prompt = PromptModel()
    prompt.predictor = Predictor.from_run(root / "run")
    return prompt


def _predict(model: PromptModel, rows: list[dict[str, str]]) -> list[object]:
    return model.predict(None, pd.DataFrame(rows))  # type: ignore[arg-type]


def test_too_many_rows_is_a_413_naming_the_limit(model, monkeypatch):
    monkeypatch.setenv(serving_limits.MAX_ROWS_ENV, "3")
    assert len(_predict(model, [RECORD] * 3)) == 3
    with pytest.raises(serving_limits.RequestTooLarge) as caught:
        _predict(model, [RECORD] * 4)
    assert caught.value.get_http_status_code() == 413
    assert "4 records; the limit is 3 (DPTUNE_SERVE_MAX_ROWS)" in caught.value.message


def test_too_many_bytes_is_a_413_before_tokenising(model, monkeypatch):
    monkeypatch.setenv(serving_limits.MAX_BYTES_ENV, "1000")

    def no_tokenizing(*args: object, **kwargs: object) -> None:
        raise AssertionError("tokenised a request over the limit")

    monkeypatch.setattr(type(model.predictor.backbone.tokenizer), "__call__", no_tokenizing)
    with pytest.raises(serving_limits.RequestTooLarge) as caught:
        _predict(
            model, [{**RECORD, "premise": "é" * 600}]
        )  # 1,200 bytes in UTF-8, and 9 of hypothesis
    assert caught.value.get_http_status_code() == 413
    assert (
        "request has 1209 bytes of field values; the limit is 1000 (DPTUNE_SERVE_MAX_BYTES)"
        in caught.value.message
    )


def test_a_long_text_is_served_and_nothing_reaches_the_disk(model, monkeypatch, tmp_path):
    monkeypatch.setenv("DPTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(serving_limits.MAX_BYTES_ENV, "2000000")
    monkeypatch.setattr("dptune.training.token_cache.MIN_CACHED_CHARS", 0)
    rows = [{**RECORD, "premise": "It rains a lot today. " * 40_000}] * 2  # 880k characters
    assert len(_predict(model, rows)) == 2
    assert not (tmp_path / "cache").exists()


def test_a_prediction_past_its_deadline_stops(model, monkeypatch):
    monkeypatch.setenv(serving_limits.TIMEOUT_ENV, "1e-9")
    with pytest.raises(serving_limits.PredictionTimedOut) as caught:
        _predict(model, [RECORD] * 50)
    assert caught.value.get_http_status_code() == 504
    assert "stopped at its deadline after 0 of" in caught.value.message


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_limit_setting_is_one_line(monkeypatch, value):
    monkeypatch.setenv(serving_limits.MAX_ROWS_ENV, value)
    with pytest.raises(
        DptuneError, match=f"DPTUNE_SERVE_MAX_ROWS: expected a positive integer, got '{value}'"
    ):
        serving_limits.max_rows()
