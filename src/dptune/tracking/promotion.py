"""Promotion: the aliases `challenger` and `champion` of a registered prompt's versions.

- `challenger`: set by the register stage to the best comparable version of that pipeline run.
- `champion`: moves only by explicit promotion (`dptune promote`, or the register stage when the
  profile says `mlflow.auto_promote`), to a comparable version whose *dev* score (never test)
  beats the champion's by more than `margin`, and only after the version's code proved to be
  this dptune's and it loaded and predicted its input example. A champion set by hand (e.g. in
  the MLflow UI) is never replaced by automatic promotion.

Scores are the ones the training run logged (`evidence.dev_score`), never a version's tags. A
candidate that does not serve is tagged `promotion_skipped` and the next best one is tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from dptune.errors import DptuneError
from dptune.tracking.evidence import Evidence, dev_score, own_code_digest
from dptune.tracking.model_versions import (
    CHALLENGER,
    CHAMPION,
    PRIMARY_METRIC_TAG,
    registered_versions,
)
from dptune.tracking.promotion_lock import LEASE_S, Lease, promotion_lock
from dptune.tracking.serving_checks import check_serves

COMPARABLE_TAGS: tuple[str, ...] = ("task", "backbone", "protocol", "format", "data_digest")
CHAMPION_MOVES_TAG = "dptune.champion_moves"  # on the registered model: moves made by dptune
DPTUNE_CHAMPION_TAG = "dptune.champion"  # on the registered model: the version dptune last made
# champion; an alias pointing elsewhere was set by someone else (the UI, the API)
# One CB dev example is 3.6 points: a move needs more than one example's worth on the smallest
# dev split, so that noise does not move the champion back and forth.
MARGIN = 0.04
SKIPPED_TAG = "promotion_skipped"
DECLINED_TAG = "promotion_declined"


@dataclass(frozen=True)
class PromotionResult:
    model: str
    metric: str  # the dev metric compared, e.g. "dev_accuracy" (as the training runs logged it)
    candidate: str  # the version considered for champion
    candidate_value: float
    champion: str  # the champion after this call
    promoted: bool
    previous_champion: str | None
    previous_value: float | None
    note: str = ""  # why the champion was left: set by hand, or no candidate fit
    optimistic: bool = False  # the candidate used the `paper` protocol (selected on val)
    margin: float = MARGIN

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
                f"{self.previous_value:.4f} of v{self.previous_champion} + margin {self.margin:g})"
            )
        if self.candidate == self.champion:
            return f"{self.model}: v{self.champion} is already champion ({value})"
        return (
            f"{self.model}: champion stays v{self.champion} ({self.metric} "
            f"{self.candidate_value:.4f} of v{self.candidate} is not above "
            f"{self.previous_value:.4f} + margin {self.margin:g})"
        )


def comparable_key(version: ModelVersion) -> tuple[str, ...]:
    return tuple(version.tags.get(tag, "") for tag in COMPARABLE_TAGS)


def _difference(a: ModelVersion, b: ModelVersion) -> str:
    for tag in COMPARABLE_TAGS:
        if a.tags.get(tag, "") != b.tags.get(tag, ""):
            return f"{tag} {a.tags.get(tag, '-')!r} vs {b.tags.get(tag, '-')!r}"
    return ""


def _metric_key(metric: str | None, versions: list[ModelVersion], model: str) -> str:
    """The dev metric to rank by: `metric` (`accuracy` means `dev_accuracy`) or the primary one."""
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


@dataclass(frozen=True)
class _Scored:
    version: ModelVersion
    value: float


def _scores(client: MlflowClient, versions: list[ModelVersion], key: str) -> dict[str, Evidence]:
    return {str(v.version): dev_score(client, v, key) for v in versions}


def ranked(
    versions: list[ModelVersion], scores: dict[str, Evidence], like: ModelVersion | None = None
) -> list[_Scored]:
    """The versions with evidence and comparable with `like` (default: the newest of them),
    best first; on a tie the oldest, which reached the value first."""
    scored = [
        _Scored(v, value)
        for v in versions
        if (value := scores[str(v.version)].value) is not None
    ]  # fmt: skip
    if not scored:
        return []
    like = like or max(scored, key=lambda s: int(s.version.version)).version
    pool = [s for s in scored if comparable_key(s.version) == comparable_key(like)]
    return sorted(pool, key=lambda s: (-s.value, int(s.version.version)))


def set_challenger(
    model_name: str, versions: list[str], metric: str | None = None
) -> PromotionResult | None:
    """Alias `challenger` the best of `versions` (one pipeline run's) by the dev metric their
    runs logged; None when none of them has one."""
    client = MlflowClient()
    every = registered_versions(client, model_name)
    mine = [v for v in every if str(v.version) in {str(x) for x in versions}]
    if not mine:
        return None
    key = _metric_key(metric, mine, model_name)
    best = ranked(mine, _scores(client, mine, key))
    if not best:
        return None
    client.set_registered_model_alias(model_name, CHALLENGER, best[0].version.version)
    return PromotionResult(
        model_name, key, str(best[0].version.version), best[0].value, "", False, None, None,
        optimistic=_optimistic(best[0].version),
    )  # fmt: skip


def promote(
    model_name: str,
    metric: str | None = None,
    version: str | None = None,
    *,
    automatic: bool = False,
    verify: bool = True,
    margin: float = MARGIN,
    lease_s: float = LEASE_S,
) -> PromotionResult:
    """Move alias `champion` to `version`, or to the best comparable version by the dev
    `metric` (default: the task's primary metric), when it beats the current champion by more
    than `margin`.

    Candidates must be comparable with the champion (task, backbone, protocol, format, data
    digest) and ranked by what their training runs logged. `automatic` (the register stage)
    never replaces a champion dptune did not set, and reports a candidate that cannot compete
    instead of failing. With `verify` the candidate's code must be this dptune's and it must
    load and predict its input example; one that does not is skipped for the next best. Every
    move and every refusal is recorded in the versions' tags.

    Promotions of one model are serialised across processes (`promotion_lock`), and every
    registry write is fenced by the lock's lease (`lease_s`: how long a silent holder is
    waited for).
    """
    if margin < 0:
        raise DptuneError(f"--margin: {margin} is negative")
    client = MlflowClient()
    with promotion_lock(client, model_name, lease_s=lease_s) as lease:
        return _Promotion(client, lease, model_name, automatic, verify, margin).run(metric, version)


class _Promotion:
    def __init__(
        self,
        client: MlflowClient,
        lease: Lease,
        model: str,
        automatic: bool,
        verify: bool,
        margin: float,
    ) -> None:
        self.client, self.lease, self.model = client, lease, model
        self.automatic, self.verify, self.margin = automatic, verify, margin
        self.flag = "--model"  # the option a refusal names: --version when one was given

    def run(self, metric: str | None, version: str | None) -> PromotionResult:
        versions = registered_versions(self.client, self.model)
        key = _metric_key(metric, versions, self.model)
        scores = _scores(self.client, versions, key)
        self.flag = "--model" if version is None else "--version"
        if version is None and all(evidence.value is None for evidence in scores.values()):
            raise DptuneError(f"--metric: no version of {self.model} has {key} from its run")
        champion = _champion(self.client, self.model)
        champion_value = scores[str(champion.version)].value if champion else None
        if champion is not None and champion_value is None:
            return self._refuse(
                key, version or str(champion.version), champion, None,
                f"champion v{champion.version} has no {key} from its training run "
                f"({scores[str(champion.version)].why}); cannot compare",
            )  # fmt: skip
        if champion is not None and self.automatic and not self._set_by_dptune(champion):
            return self._note(
                key, version or str(champion.version), champion, champion_value,
                f"champion v{champion.version} was set outside dptune; automatic promotion "
                f"leaves it (run `dptune promote --model {self.model}` to replace it)",
            )  # fmt: skip
        if version is not None:
            candidates = self._chosen(versions, scores, key, version, champion, champion_value)
            if isinstance(candidates, PromotionResult):
                return candidates
        else:
            candidates = ranked(versions, scores, like=champion)
            if not candidates:
                raise DptuneError(f"--metric: no version of {self.model} has {key} from its run")
        return self._try(key, candidates, champion, champion_value)

    def _chosen(
        self,
        versions: list[ModelVersion],
        scores: dict[str, Evidence],
        key: str,
        version: str,
        champion: ModelVersion | None,
        champion_value: float | None,
    ) -> list[_Scored] | PromotionResult:
        chosen = next((v for v in versions if str(v.version) == str(version)), None)
        if chosen is None:
            raise DptuneError(f"--version: {self.model} has no version {version}")
        evidence = scores[str(chosen.version)]
        if evidence.value is None:
            return self._refuse(
                key, version, champion, champion_value,
                f"v{version} has no {key} from its training run ({evidence.why}); not promoted",
                skipped=chosen,
            )  # fmt: skip
        if champion is not None and comparable_key(chosen) != comparable_key(champion):
            return self._refuse(
                key, version, champion, champion_value,
                f"v{version} is not comparable with champion v{champion.version} "
                f"({_difference(chosen, champion)}); not promoted",
                skipped=chosen,
            )  # fmt: skip
        return [_Scored(chosen, evidence.value)]

    def _try(
        self,
        key: str,
        candidates: list[_Scored],
        champion: ModelVersion | None,
        champion_value: float | None,
    ) -> PromotionResult:
        failures = []
        for candidate in candidates:
            if champion is not None and candidate.version.version == champion.version:
                return self._stays(key, candidate, champion, champion_value)
            if champion_value is not None and not candidate.value > champion_value + self.margin:
                return self._stays(key, candidate, champion, champion_value)
            if self.verify:
                try:
                    check_serves(self.model, str(candidate.version.version))
                except DptuneError as err:
                    if self.flag == "--version" and not self.automatic:
                        raise  # the one version asked for: its own line
                    why = str(err).removeprefix("--version: ").removesuffix("; champion not moved")
                    self._tag(candidate.version, SKIPPED_TAG, why)
                    failures.append(why)
                    continue
            return self._promote(key, candidate, champion, champion_value)
        return self._refuse(
            key, str(candidates[0].version.version), champion, champion_value,
            f"no candidate serves ({'; '.join(failures)}); champion not moved",
        )  # fmt: skip

    def _refuse(
        self,
        key: str,
        candidate: str,
        champion: ModelVersion | None,
        champion_value: float | None,
        why: str,
        skipped: ModelVersion | None = None,
    ) -> PromotionResult:
        """The register stage reports it and goes on; `dptune promote` is one line, exit 2."""
        if skipped is not None:
            self._tag(skipped, SKIPPED_TAG, why)
        if not self.automatic:
            raise DptuneError(f"{self.flag}: {self.model}: {why}")
        return self._note(key, candidate, champion, champion_value, why)

    def _note(
        self,
        key: str,
        candidate: str,
        champion: ModelVersion | None,
        champion_value: float | None,
        note: str,
    ) -> PromotionResult:
        current = str(champion.version) if champion is not None else ""
        return PromotionResult(
            self.model, key, candidate, float("nan"), current, False, current or None,
            champion_value, note=note, margin=self.margin,
        )  # fmt: skip

    def _stays(
        self,
        key: str,
        candidate: _Scored,
        champion: ModelVersion | None,
        champion_value: float | None,
    ) -> PromotionResult:
        assert champion is not None
        result = PromotionResult(
            self.model, key, str(candidate.version.version), candidate.value,
            str(champion.version), False, str(champion.version), champion_value,
            optimistic=_optimistic(candidate.version), margin=self.margin,
        )  # fmt: skip
        if candidate.version.version != champion.version:
            self._tag(candidate.version, DECLINED_TAG, result.summary)
        return result

    def _tag(self, version: ModelVersion, key: str, value: str) -> None:
        self.lease.check()
        self.client.set_model_version_tag(self.model, version.version, key, value)

    def _set_by_dptune(self, champion: ModelVersion) -> bool:
        tags = self.client.get_registered_model(self.model).tags or {}
        return tags.get(DPTUNE_CHAMPION_TAG) == str(champion.version)

    def _promote(
        self,
        key: str,
        candidate: _Scored,
        champion: ModelVersion | None,
        champion_value: float | None,
    ) -> PromotionResult:
        model, version = self.model, candidate.version.version
        self.lease.check()
        self.client.set_registered_model_alias(model, CHAMPION, version)
        self.client.set_registered_model_tag(model, DPTUNE_CHAMPION_TAG, str(version))
        moves = (self.client.get_registered_model(model).tags or {}).get(CHAMPION_MOVES_TAG, "0")
        moves = int(moves) if moves.isdigit() else 0
        self.client.set_registered_model_tag(model, CHAMPION_MOVES_TAG, str(moves + 1))
        result = PromotionResult(
            model, key, str(version), candidate.value, str(version), True,
            str(champion.version) if champion is not None else None, champion_value,
            optimistic=_optimistic(candidate.version), margin=self.margin,
        )  # fmt: skip
        tags = {
            "promoted_because": result.summary,
            "promoted_metric": key,
            "promoted_value": repr(candidate.value),
            "promotion_margin": repr(self.margin),
            "previous_champion": result.previous_champion or "none",
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "promoted_by": "register stage" if self.automatic else "dptune promote",
        }
        if self.verify:
            tags["code_sha256"] = own_code_digest()
        if champion_value is not None:
            tags["previous_value"] = repr(champion_value)
        for tag, value in tags.items():
            self.client.set_model_version_tag(model, version, tag, value)
        if champion is not None:
            self.client.set_model_version_tag(model, champion.version, "replaced_by", version)
        return result


def _optimistic(version: ModelVersion) -> bool:
    return version.tags.get("optimistic") == "true"
