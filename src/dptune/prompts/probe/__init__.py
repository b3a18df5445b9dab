"""The rank probe of the paper's Sec. 2: P^T = U ReLU(Sigma) V with a trainable diagonal Sigma."""

from dptune.prompts.probe.config import ProbeConfig
from dptune.prompts.registry import MethodSpec, register_method

__all__ = ["ProbeConfig"]

register_method(
    MethodSpec(
        name="probe",
        config=ProbeConfig,
        module="dptune.prompts.probe.model:SvdProbePrompt",
        help="rank probe (analysis): U ReLU(Sigma) V, counting Sigma's signs (the probe stage)",
        order=3,
        stage="probe",
        rank_statistics=True,
    )
)
