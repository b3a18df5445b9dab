"""Promotion: the aliases `challenger` and `champion` of a registered prompt's versions.

- `challenger`: set by the register stage to the best comparable version of that pipeline run.
- `champion`: moves only by explicit promotion (`dptune promote`, or the register stage when the
  profile says `mlflow.auto_promote`), to a comparable version with a strictly better *dev*
  score (never test), and only after the version has loaded and predicted its input example.
  A champion set by hand (e.g. in the MLflow UI) is never replaced by automatic promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError
from dptune.tracking.model_versions import (
    CHALLENGER,
    CHAMPION,
    PRIMARY_METRIC_TAG,
    registered_versions,
)
from dptune.tracking.promotion_lock import promotion_lock
from dptune.tracking.serving_checks import check_serves

COMPARABLE_TAGS: tuple[str, ...] = ("task", "backbone", "protocol", "format", "data_digest")
CHAMPION_MOVES_TAG = "dptune.champion_moves"  # on the registered model: moves made by dptune
DPTUNE_CHAMPION_TAG = "dptune.champion"  # on the registered model: the version dptune last made
# champion; an alias pointing elsewhere was set by someone else (the UI, the API)


@dataclass(frozen=True)
class PromotionResult:
    model: str
    metric: str  # the version tag compared, e.g. "dev_accuracy"
    candidate: str  # the version considered for champion
    candidate_value: float
    champion: str  # the champion after this call
    promoted: bool
    previous_champion: str | None
    previous_value: float | None
    note: str = ""  # why an automatic promotion left a champion set by hand
    optimistic: bool = False  # the candidate used the `paper` protocol (selected on val)

    @property
    def summary(self) -> str:
        text = self._summary()
        return f"{text} [optimistic: paper protocol]" if self.optimistic else text

    def _summary(self) -> str:
        value = f"{self.metric} {self.candidate_value:.4f}"
        if self.note:
            return f"{self.model}: {self.note}"
        if self.promoted and self.previous_champion is None:
            return f"{self.model}: v{self.champion} is now champion ({value}; no previous champion)"
        if self.promoted:
            return (
                f"{self.model}: v{self.champion} is now champion ({value} > "
                f"{self.previous_value:.4f} of v{self.previous_champion})"
            )
        if self.candidate == self.champion:
            return f"{self.model}: v{self.champion} is already champion ({value})"
        return (
            f"{self.model}: champion stays v{self.champion} ({self.metric} "
            f"{self.previous_value:.4f} >= {self.candidate_value:.4f} of v{self.candidate})"
        )


def _tag_value(version: ModelVersion, key: str) -> float | None:
    try:
        return float(version.tags[key])
    except (KeyError, ValueError):
        return None


def comparable_key(version: ModelVersion) -> tuple[str, ...]:
    return tuple(version.tags.get(tag, "") for tag in COMPARABLE_TAGS)


def _difference(a: ModelVersion, b: ModelVersion) -> str:
    for tag in COMPARABLE_TAGS:
        if a.tags.get(tag, "") != b.tags.get(tag, ""):
            return f"{tag} {a.tags.get(tag, '-')!r} vs {b.tags.get(tag, '-')!r}"
    return ""


def _metric_key(metric: str | None, versions: list[ModelVersion], model: str) -> str:
    """The dev tag to rank by: `metric` (`accuracy` means `dev_accuracy`) or the primary one."""
    if metric is None:
        newest_first = sorted(versions, key=lambda v: int(v.version), reverse=True)
        metric = next(
            (v.tags[PRIMARY_METRIC_TAG] for v in newest_first if PRIMARY_METRIC_TAG in v.tags),
            None,
        )
        if metric is None:
            raise DptuneError(f"--metric: versions of {model} record no primary metric; give one")
    if metric.startswith("test_"):
        raise DptuneError(
            f"--metric: {metric}: promotion ranks by the dev split, never test "
            f"(use dev_{metric.removeprefix('test_')})"
        )
    return metric if metric.startswith("dev_") else f"dev_{metric}"


def current_champion(model_name: str) -> str | None:
    """The version alias `champion` points to, if any."""
    champion = _champion(MlflowClient(), model_name)
    return str(champion.version) if champion is not None else None


def _champion(client: MlflowClient, model: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model, CHAMPION)
    except MlflowException:
        return None


def best_version(
    versions: list[ModelVersion], key: str, model: str, like: ModelVersion | None = None
) -> ModelVersion:
    """The best version by `key` among those comparable with `like` (default: the newest);
    on a tie the oldest, which reached the value first."""
    scored = [v for v in versions if _tag_value(v, key) is not None]
    if not scored:
        raise DptuneError(f"--metric: no version of {model} records {key}")
    like = like or max(scored, key=lambda v: int(v.version))
    pool = [v for v in scored if comparable_key(v) == comparable_key(like)] or [like]
    return max(pool, key=lambda v: (_tag_value(v, key), -int(v.version)))


def set_challenger(
    model_name: str, versions: list[str], metric: str | None = None
) -> PromotionResult | None:
    """Alias `challenger` the best of `versions` (one pipeline run's) by the dev metric; None
    when none of them records it."""
    client = MlflowClient()
    every = registered_versions(client, model_name)
    mine = [v for v in every if str(v.version) in {str(x) for x in versions}]
    if not mine:
        return None
    key = _metric_key(metric, mine, model_name)
    best = best_version(mine, key, model_name)
    client.set_registered_model_alias(model_name, CHALLENGER, best.version)
    value = _tag_value(best, key)
    assert value is not None
    return PromotionResult(
        model_name, key, str(best.version), value, "", False, None, None,
        optimistic=_optimistic(best),
    )  # fmt: skip


def promote(
    model_name: str,
    metric: str | None = None,
    version: str | None = None,
    *,
    automatic: bool = False,
    verify: bool = True,
) -> PromotionResult:
    """Move alias `champion` to `version`, or to the best comparable version by the dev
    `metric` (default: the task's primary metric), when it beats the current champion; ties
    keep the champion.

    Candidates must be comparable with the champion (task, backbone, protocol, format, data
    digest). `automatic` (the register stage) never replaces a champion dptune did not set.
    With `verify` the candidate must load and predict its input example first. Every move and
    every refusal is recorded in the versions' tags.

    Promotions of one model are serialised across processes (`promotion_lock`): each one reads
    the champion after the previous one finished, so two at once cannot both move it from the
    same champion; `dptune.champion_moves` on the registered model counts the moves.
    """
    client = MlflowClient()
    with promotion_lock(client, model_name):
        return _promote_now(client, model_name, metric, version, automatic, verify)


def _promote_now(
    client: MlflowClient,
    model_name: str,
    metric: str | None,
    version: str | None,
    automatic: bool,
    verify: bool,
) -> PromotionResult:
    versions = registered_versions(client, model_name)
    key = _metric_key(metric, versions, model_name)
    champion = _champion(client, model_name)
    candidate = _candidate(versions, key, model_name, version, champion)
    candidate_value = _tag_value(candidate, key)
    assert candidate_value is not None  # _candidate only returns versions with the metric

    if champion is not None and automatic and not _set_by_dptune(client, model_name, champion):
        note = (
            f"champion v{champion.version} was set outside dptune; automatic promotion leaves "
            f"it (run `dptune promote --model {model_name}` to replace it)"
        )
        return PromotionResult(
            model_name, key, str(candidate.version), candidate_value, str(champion.version),
            False, str(champion.version), _tag_value(champion, key), note=note,
            optimistic=_optimistic(candidate),
        )  # fmt: skip
    champion_value = _tag_value(champion, key) if champion is not None else None
    if champion is not None and champion_value is None:
        raise DptuneError(
            f"--metric: champion v{champion.version} of {model_name} has no {key}; cannot compare"
        )
    if champion is None or (
        candidate.version != champion.version
        and champion_value is not None
        and candidate_value > champion_value
    ):
        if verify:
            check_serves(model_name, str(candidate.version))
        return _promote(
            client, model_name, key, candidate, candidate_value, champion, champion_value,
            by="register stage" if automatic else "dptune promote",
        )  # fmt: skip
    assert champion_value is not None
    result = PromotionResult(
        model=model_name,
        metric=key,
        candidate=str(candidate.version),
        candidate_value=candidate_value,
        champion=str(champion.version),
        promoted=False,
        previous_champion=str(champion.version),
        previous_value=champion_value,
        optimistic=_optimistic(candidate),
    )
    if candidate.version != champion.version:
        client.set_model_version_tag(
            model_name, candidate.version, "promotion_declined", result.summary
        )
    return result


def _optimistic(version: ModelVersion) -> bool:
    return version.tags.get("optimistic") == "true"


def _set_by_dptune(client: MlflowClient, model: str, champion: ModelVersion) -> bool:
    tags = client.get_registered_model(model).tags or {}
    return tags.get(DPTUNE_CHAMPION_TAG) == str(champion.version)


def _candidate(
    versions: list[ModelVersion],
    key: str,
    model: str,
    version: str | None,
    champion: ModelVersion | None,
) -> ModelVersion:
    if version is not None:
        chosen = next((v for v in versions if str(v.version) == str(version)), None)
        if chosen is None:
            raise DptuneError(f"--version: {model} has no version {version}")
        if _tag_value(chosen, key) is None:
            raise DptuneError(f"--metric: v{version} of {model} has no {key}")
        if champion is not None and comparable_key(chosen) != comparable_key(champion):
            raise DptuneError(
                f"--version: v{version} of {model} is not comparable with champion "
                f"v{champion.version} ({_difference(chosen, champion)})"
            )
        return chosen
    best = best_version(versions, key, model, like=champion)
    if champion is not None and _tag_value(champion, key) == _tag_value(best, key):
        return champion  # a tie keeps the champion
    return best


def _promote(
    client: MlflowClient,
    model: str,
    key: str,
    candidate: ModelVersion,
    candidate_value: float,
    champion: ModelVersion | None,
    champion_value: float | None,
    by: str,
) -> PromotionResult:
    client.set_registered_model_alias(model, CHAMPION, candidate.version)
    client.set_registered_model_tag(model, DPTUNE_CHAMPION_TAG, str(candidate.version))
    moves = (client.get_registered_model(model).tags or {}).get(CHAMPION_MOVES_TAG, "0")
    moves = int(moves) if moves.isdigit() else 0
    client.set_registered_model_tag(model, CHAMPION_MOVES_TAG, str(moves + 1))
    result = PromotionResult(
        model=model,
        metric=key,
        candidate=str(candidate.version),
        candidate_value=candidate_value,
        champion=str(candidate.version),
        promoted=True,
        previous_champion=str(champion.version) if champion is not None else None,
        previous_value=champion_value,
        optimistic=_optimistic(candidate),
    )
    tags = {
        "promoted_because": result.summary,
        "promoted_metric": key,
        "promoted_value": repr(candidate_value),
        "previous_champion": result.previous_champion or "none",
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promoted_by": by,
    }
    if champion_value is not None:
        tags["previous_value"] = repr(champion_value)
    for tag, value in tags.items():
        client.set_model_version_tag(model, candidate.version, tag, value)
    if champion is not None:
        client.set_model_version_tag(model, champion.version, "replaced_by", candidate.version)
    return result
