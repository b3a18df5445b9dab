"""DePT's adapter format, written to a run folder's `adapter/` (docs/methods.md).

No PEFT adapter type holds an update of the input embeddings, so a DePT run exports two files
of its own, and no `adapter_config.json` (PEFT refuses the folder instead of loading a prompt
that would be missing the update):

    dept_config.json         {"format": "dptune-dept", "version": 1, "base_model_name_or_path",
                              "num_virtual_tokens": m, "token_dim": e,
                              "max_source_length": s, "rank": r}
    dept_model.safetensors   prompt_embeddings [m, e], update_a [s, r], update_b [r, e]

To apply it: embed the source tokens with the frozen model, add row i of update_a @ update_b
to the embedding of source token i (i < s, counted from the source's first token; padding and
answer tokens get nothing), then prepend prompt_embeddings, whose attention mask is all ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dptune.errors import DptuneError
from dptune.fileio import read_json, write_json

if TYPE_CHECKING:
    from dptune.prompts.dept.model import DeptPrompt

FORMAT = "dptune-dept"
VERSION = 1
CONFIG_FILE = "dept_config.json"
WEIGHTS_FILE = "dept_model.safetensors"
TENSORS = ("prompt_embeddings", "update_a", "update_b")


def save_dept_adapter(prompt: DeptPrompt, directory: Path, base_model: str | None) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    write_json(
        directory / CONFIG_FILE,
        {
            "format": FORMAT,
            "version": VERSION,
            "base_model_name_or_path": base_model,
            "num_virtual_tokens": prompt.num_tokens,
            "token_dim": prompt.dim,
            "max_source_length": prompt.source_length,
            "rank": prompt.config.rank,
        },
    )
    tensors = dict(zip(TENSORS, (prompt.weight, prompt.update_a, prompt.update_b), strict=True))
    save_file(
        {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()},
        str(directory / WEIGHTS_FILE),
        metadata={"format": "pt"},
    )


def read_dept_adapter(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and tensors of a DePT adapter folder, checked; one line if it is not one."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_json(directory / CONFIG_FILE, missing="missing; not a DePT adapter")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DptuneError(f"{directory / CONFIG_FILE}: not a {FORMAT} adapter config")
    if config.get("version") != VERSION:
        raise DptuneError(f"{directory / CONFIG_FILE}: unknown version {config.get('version')!r}")
    try:
        tensors = load_file(str(directory / WEIGHTS_FILE))
    except Exception as err:  # safetensors: SafetensorError, OSError, FileNotFoundError
        raise DptuneError(
            f"{directory / WEIGHTS_FILE}: unreadable ({type(err).__name__})"
        ) from None
    m, e = config["num_virtual_tokens"], config["token_dim"]
    s, r = config["max_source_length"], config["rank"]
    shapes = {"prompt_embeddings": [m, e], "update_a": [s, r], "update_b": [r, e]}
    for name, shape in shapes.items():
        if name not in tensors or list(tensors[name].shape) != shape:
            raise DptuneError(f"{directory / WEIGHTS_FILE}: {name} is not {shape}")
    return config, tensors


def load_dept_adapter(prompt: DeptPrompt, directory: str | Path) -> None:
    """Copy a DePT adapter's tensors into `prompt` (of the same m, e, s and r)."""
    _, tensors = read_dept_adapter(directory)
    own = dict(zip(TENSORS, (prompt.weight, prompt.update_a, prompt.update_b), strict=True))
    for name, param in own.items():
        if tensors[name].shape != param.shape:
            raise DptuneError(
                f"{directory}: {name} is {list(tensors[name].shape)}, this run's is "
                f"{list(param.shape)}"
            )
    with torch.no_grad():
        for name, param in own.items():
            param.copy_(tensors[name])
