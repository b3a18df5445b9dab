"""The rank probe of the paper's Sec. 2: P^T = U ReLU(Sigma) V with a trainable diagonal Sigma."""

from dptune.prompts.probe.config import ProbeConfig
from dptune.prompts.probe.model import SvdProbePrompt

__all__ = ["ProbeConfig", "SvdProbePrompt"]
