"""Decomposed prompt tuning with an embedding update: DePT (Shi & Lipani, ICLR 2024)."""

from dptune.prompts.dept.config import DeptConfig
from dptune.prompts.registry import MethodSpec, register_method

__all__ = ["DeptConfig"]

register_method(
    MethodSpec(
        name="dept",
        config=DeptConfig,
        module="dptune.prompts.dept.model:DeptPrompt",
        help="DePT: an m x e prompt plus A (s x r) @ B (r x e) added to the source embeddings",
        order=6,
        paper=False,
        plain_prompt=False,
    )
)
