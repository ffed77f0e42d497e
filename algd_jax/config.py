"""Typed configuration of the ALGD agent (SPEC §7 defaults, §8 variants).

Every field is a plain, hashable value so that a config can be a static (non-traced)
field of the agent state: changing any of them means a new compiled program.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

AgentName = Literal["algd", "lgd", "algd-ddpm"]


@dataclass(frozen=True)
class AgentConfig:
    """Hyper-parameters of one ALGD learner.

    Defaults are the authors' released implementation ("reference" column of the spec);
    the paper's variants are one switch each (see `paper_faithful`).
    """

    agent: AgentName = "algd"
    """Policy/energy variant: `algd` (VE-SDE, augmented Lagrangian), `lgd` (plain
    Lagrangian energy, the paper's unstable baseline), `algd-ddpm` (DDPM policy class)."""
    ensemble_size: int = 4
    """M: number of cost critics."""
    mc_samples: int = 4
    """N: Monte-Carlo samples of the score target."""
    diffusion_steps: int = 5
    """K: reverse diffusion steps."""
    beta: float = 1.0
    """Boltzmann temperature of the energy-based policy."""
    rho: float = 1.0
    """Augmentation strength of the augmented Lagrangian."""
    kappa: float = 1.0
    """Risk weight: qc_risk = mean + kappa * std over the cost ensemble (paper: 0)."""
    cost_budget: float = 151.989
    """h: budget on the discounted cost value Qc (units of cost)."""
    actor_loss: Literal["hybrid", "score"] = "hybrid"
    """`hybrid`: mean L_A(s, a_0) + score_loss_weight * score mse (reference);
    `score`: score-matching mse only (paper)."""
    score_loss_weight: float = 0.1
    """Weight of the score-matching term in the hybrid actor loss."""
    multiplier: Literal["adam", "projected"] = "adam"
    """`adam`: Adam on log(lambda) (reference); `projected`: lambda <- max(0, lambda +
    multiplier_lr * (qc - h)) (paper)."""
    init_multiplier: float = 0.6931
    """Initial lambda."""
    multiplier_lr: float = 3e-4
    """Adam learning rate of log(lambda), or the ascent step size of the projected rule."""
    sigma_min: float = 0.01
    """Smallest VE noise scale (paper table: 1e-4)."""
    sigma_max: float = 1.0
    """Largest VE noise scale (paper table: 1e-1)."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    cost_critic_lr: float = 3e-4
    gamma: float = 0.99
    """Reward discount."""
    cost_gamma: float = 0.99
    """Cost discount."""
    polyak: float = 0.005
    """Target-network averaging rate (applied on even update indices of each group)."""
    critic_hidden: int = 256
    score_hidden: int = 128
    embed_dim: int = 16
    """Width of the diffusion-step embedding of the score net."""
    ddpm_guidance: float = 0.05
    """Step length of the normalised score guidance in the DDPM sampler."""

    def validate(self) -> AgentConfig:
        """Raise `ValueError` with one clear message if a value is impossible."""
        positive_ints = {
            "ensemble_size": "--ensemble-size (M)",
            "mc_samples": "--mc-samples (N)",
            "diffusion_steps": "--diffusion-steps (K)",
            "critic_hidden": "--critic-hidden",
            "score_hidden": "--score-hidden",
            "embed_dim": "--embed-dim",
        }
        for name, flag in positive_ints.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} must be a positive integer, got {value!r}")
        positive_floats = [
            "beta",
            "rho",
            "sigma_min",
            "sigma_max",
            "actor_lr",
            "critic_lr",
            "cost_critic_lr",
            "multiplier_lr",
        ]
        for name in positive_floats:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value!r}")
        if self.diffusion_steps < 2 and self.agent != "algd-ddpm":
            raise ValueError(
                f"--diffusion-steps (K) must be >= 2 for the VE-SDE schedule, got "
                f"{self.diffusion_steps}"
            )
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"--sigma-min ({self.sigma_min}) must be smaller than --sigma-max "
                f"({self.sigma_max})"
            )
        for name in ("gamma", "cost_gamma"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {value!r}")
        if not 0.0 < self.polyak <= 1.0:
            raise ValueError(f"--polyak must be in (0, 1], got {self.polyak!r}")
        if self.kappa < 0:
            raise ValueError(f"--kappa must be >= 0, got {self.kappa!r}")
        if not self.init_multiplier > 0 and self.multiplier == "adam":
            raise ValueError(
                f"--init-multiplier must be > 0 with --multiplier adam (it is stored as "
                f"log lambda), got {self.init_multiplier!r}"
            )
        if self.init_multiplier < 0:
            raise ValueError(f"--init-multiplier must be >= 0, got {self.init_multiplier!r}")
        if self.agent not in ("algd", "lgd", "algd-ddpm"):
            raise ValueError(f"unknown agent {self.agent!r}; choose one of algd, lgd, algd-ddpm")
        return self

    @property
    def augmented(self) -> bool:
        """True when the energy is the augmented Lagrangian L_A (all but `lgd`)."""
        return self.agent != "lgd"

    @property
    def ddpm(self) -> bool:
        return self.agent == "algd-ddpm"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def paper_faithful(config: AgentConfig) -> AgentConfig:
    """The paper's choices where they differ from the released code (SPEC §8)."""
    return dataclasses.replace(
        config,
        kappa=0.0,
        actor_loss="score",
        multiplier="projected",
        sigma_min=1e-4,
        sigma_max=1e-1,
    )
