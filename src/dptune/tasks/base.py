"""The contract every SuperGLUE task implements.

A task owns, in one module: how its official jsonl is read and flattened into `Example`s, its
two text-to-text formats (`paper`, `natural`), its verbalizer (official label <-> target text),
the inverse from a predicted string to an official label, its metrics, and the submission
record layout. Training and evaluation code only ever talks to this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Format = Literal["paper", "natural"]
Split = Literal["train", "val", "test"]
FORMATS: tuple[str, ...] = ("paper", "natural")
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    """One scoring unit of a task.

    `idx` is the official idx: an int for most tasks; for MultiRC (one Example per answer
    option) a dict {"paragraph": p, "question": q, "answer": a}; for ReCoRD (one Example per
    query) the query idx as an int. `data` holds the official fields the formats need.
    `label` is the official label (typed as in the gold file), or None on test.
    """

    idx: Any
    data: Mapping[str, Any]
    label: Any = None

    @property
    def key(self) -> Any:
        """A hashable, JSON-safe key of `idx` (MultiRC: a (p, q, a) tuple)."""
        if isinstance(self.idx, Mapping):
            return tuple(self.idx[k] for k in ("paragraph", "question", "answer"))
        return self.idx


@dataclass(frozen=True)
class TextPair:
    source: str
    target: str


@dataclass
class Task(ABC):
    """A SuperGLUE task. Subclasses set the class variables and implement the methods."""

    name: ClassVar[str]  # lower-case CLI name, e.g. "cb"
    dirname: ClassVar[str]  # official folder name, e.g. "CB"
    metric_names: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]  # chooses the epoch
    # The one metric the paper's Avg takes for this task (SuperGLUE's score averages them all)
    paper_metric: ClassVar[str]
    fmt: Format = "paper"
    options: dict[str, Any] = field(default_factory=dict)

    # ---- reading -------------------------------------------------------------------------
    @abstractmethod
    def read(self, data_dir: str, split: Split) -> list[Example]:
        """Read `<data_dir>/<dirname>/<split>.jsonl` into Examples (cached via HF datasets)."""

    # ---- formats ---------------------------------------------------------------------------
    @abstractmethod
    def source(self, ex: Example) -> str:
        """The model input text for `ex` in this task's format."""

    @abstractmethod
    def train_pairs(self, ex: Example) -> list[TextPair]:
        """Training pairs made from one labelled example (may be empty or several)."""

    @abstractmethod
    def candidates(self, ex: Example) -> list[str]:
        """Target strings to score with rank decoding (the verbalized labels, or entities)."""

    @abstractmethod
    def to_label(self, text: str, ex: Example) -> Any | None:
        """Map a predicted target string back to an official label; None if invalid."""

    # ---- scoring ---------------------------------------------------------------------------
    @abstractmethod
    def score(
        self, examples: Sequence[Example], predictions: Mapping[Any, Any]
    ) -> dict[str, float]:
        """Metrics (fractions in [0, 1]) of `predictions` (keyed by `Example.key`) on `examples`.

        A None prediction (an invalid generation) counts as wrong.
        """

    @abstractmethod
    def submission(self, examples: Sequence[Example], predictions: Mapping[Any, Any]) -> list[dict]:
        """Official SuperGLUE submission records for `predictions` over `examples`."""
