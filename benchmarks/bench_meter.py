"""What the skeptic's benchmark measures inside one run, the same way on both sides.

- Tokens: the base model's forward (e.g. `LlamaModel.forward`, patched on the class, so it counts
  whatever instance either side builds) adds up, in calls made with gradients enabled (training),
  the attention mask's ones (real tokens: prompt, source and answer) and its size (padded
  tokens). Evaluation forwards run without gradients and are not counted.
- Useful FLOPs of those training forwards, per row from its real length only (padding is not
  useful work): linear layers 2 x forward (a frozen model computes activation gradients, no
  weight gradients), attention scores 3 x forward, as `llm_plan.step_flops` counts them; the
  LM head is left out (dptune computes the answer positions' logits only, a few of ~200).
- Time: the run's clock starts after imports; `loaded` marks the end of model loading and
  tokenisation (the post-load point); each evaluation call is timed. Training time runs from
  `loaded` to the last epoch's end (after its dev evaluation), less the evaluations in it; what
  follows (the test predictions, and on dptune's side the run folder's files) is not training.
- Memory: at the post-load point the process's RSS is read and its high-water mark reset
  (`/proc/self/clear_refs`, 5), so the peak reported is the peak above the loaded model (on
  CUDA: allocated tensor memory and its peak, reset there).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
UNGATED_MLP = ("bert", "mpnet", "roberta", "gpt2")
STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


class Meter:
    """One run's counters; `patch_model_class` and `timed` install the probes."""

    def __init__(
        self, layer_params: int, layers: int, heads: int, head_dim: int, device: str = "cpu"
    ) -> None:
        self.device = device
        self.layer_params, self.layers = layer_params, layers
        self.attention_width = heads * head_dim
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.loaded_at: float | None = None
        self.baseline_mb: float | None = None
        self.eval_seconds = 0.0
        self.trained: tuple[float, float] | None = None  # (time, eval seconds) at the last epoch
        self._evaluating = 0
        self._dev_inside = False
        self.real_tokens = 0
        self.padded_tokens = 0
        self.useful_flops = 0.0
        self.dev_curve: list[dict[str, float]] = []

    @classmethod
    def for_config(cls, config: Any, device: str = "cpu") -> Meter:
        """From a transformers config: q, k, v, o and the MLP's matrices (three in the gated
        MLP of Llama-like decoders, two in BERT-like encoders)."""
        hidden, heads = config.hidden_size, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        layer = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
        mlp_matrices = 2 if config.model_type in UNGATED_MLP else 3
        layer += mlp_matrices * hidden * config.intermediate_size
        return cls(layer, config.num_hidden_layers, heads, head_dim, device)

    # ---- probes -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def patch_model_class(self, model_class: type) -> Iterator[None]:
        """Count the training forwards of every instance of `model_class` in the block."""
        original = model_class.forward

        @functools.wraps(original)
        def counting(module: Any, *args: Any, **kwargs: Any) -> Any:
            mask = kwargs.get("attention_mask")
            if torch.is_grad_enabled() and isinstance(mask, torch.Tensor) and mask.dim() == 2:
                self.count(mask)
            return original(module, *args, **kwargs)

        model_class.forward = counting
        try:
            yield
        finally:
            model_class.forward = original

    def count(self, mask: torch.Tensor) -> None:
        lengths = mask.detach().sum(dim=1).to(torch.float64)
        self.real_tokens += int(lengths.sum())
        self.padded_tokens += mask.numel()
        linear = 2 * lengths.sum() * self.layers * self.layer_params
        attention = 4 * (lengths**2).sum() * self.layers * self.attention_width
        self.useful_flops += float(2 * linear + 3 * attention)

    def timed(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, its calls' seconds added to the evaluation time."""

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self._evaluating += 1
            try:
                return function(*args, **kwargs)
            finally:
                self._evaluating -= 1
                self.eval_seconds += time.perf_counter() - start
                if self._dev_inside:  # a dev score reported from inside this evaluation
                    self._dev_inside = False
                    self.trained = (time.perf_counter(), self.eval_seconds)

        return wrapper

    # ---- events -------------------------------------------------------------------------------
    def loaded(self) -> None:
        """The model is loaded and the data tokenised: the post-load point."""
        if self.loaded_at is not None:
            return
        self.loaded_at = time.perf_counter()
        if self.device == "cuda":
            self.baseline_mb = torch.cuda.memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
            return
        self.baseline_mb = _status_mb("VmRSS")
        with contextlib.suppress(OSError):
            CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS

    def dev(self, epoch: int, accuracy: float) -> None:
        """Epoch `epoch` ended with this dev accuracy (reported after its evaluation, or from
        inside it: then training time is closed when the evaluation returns)."""
        if self._evaluating:
            self._dev_inside = True
        else:
            self.trained = (time.perf_counter(), self.eval_seconds)
        self.dev_curve.append(
            {"epoch": epoch, "seconds": round(self.elapsed(), 3), "dev_acc": round(accuracy, 6)}
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def result(self, test_acc: float | None, best_epoch: int | None) -> dict[str, Any]:
        seconds = self.elapsed()
        loaded = self.loaded_at or self.started
        end, evaluating = self.trained or (time.perf_counter(), self.eval_seconds)
        if self.device == "cuda":
            peak: float | None = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = _status_mb("VmHWM")
        above = None if peak is None or self.baseline_mb is None else peak - self.baseline_mb
        return {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(time.process_time() - self.cpu_started, 3),
            "load_seconds": round(loaded - self.started, 3),
            "eval_seconds": round(self.eval_seconds, 3),
            "train_seconds": round(end - loaded - evaluating, 3),
            "test_acc": test_acc,
            "best_epoch": best_epoch,
            "dev_curve": self.dev_curve,
            "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens,
            "useful_flops": self.useful_flops,
            "baseline_mb": None if self.baseline_mb is None else round(self.baseline_mb, 1),
            "peak_above_baseline_mb": None if above is None else round(max(above, 0.0), 1),
        }


def model_parts(model_dir: str) -> tuple[Any, type]:
    """The checkpoint's config and its base model class (whose forward the meter patches)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    return config, AutoModel._model_mapping[type(config)]


def measured_dptune(cfg: Any, model_dir: str, device: str) -> dict[str, Any]:
    """`dptune.run.train(cfg)` with the meter's probes: its callbacks mark the post-load point
    and each epoch's dev score, and its evaluation calls are timed."""
    import dptune.training.trainer as trainer_module
    from dptune.run import train
    from dptune.training.events import TrainingCallback

    config, base_class = model_parts(model_dir)
    meter = Meter.for_config(config, device)

    class Probe(TrainingCallback):
        def on_start(self, start: Any) -> None:
            meter.loaded()

        def on_epoch_end(self, epoch: int, step: int, dev: Any, record: Any) -> None:
            meter.dev(epoch, dev["accuracy"])

    original = trainer_module.predict_examples
    trainer_module.predict_examples = meter.timed(original)
    try:
        with meter.patch_model_class(base_class):
            metrics = train(cfg, progress=False, callbacks=[Probe()])
    finally:
        trainer_module.predict_examples = original
    return meter.result(metrics["test"]["accuracy"], metrics["best_epoch"])
