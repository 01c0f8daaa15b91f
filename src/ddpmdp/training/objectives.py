"""The three training objectives of the paper's models, by name (no torch: the CLI's help uses them).

``simple`` — L_simple (Ho et al.), ``hybrid`` — L_simple + λ·L_vlb (Nichol & Dhariwal), ``vlb`` — L_vlb
with loss-second-moment importance sampling of t. The losses themselves are in
:mod:`ddpmdp.training.losses`.
"""
from __future__ import annotations

from typing import Literal

__all__ = ["Objective", "OBJECTIVES", "HYBRID_LAMBDA"]

Objective = Literal["simple", "hybrid", "vlb"]
OBJECTIVES: tuple[str, ...] = ("simple", "hybrid", "vlb")
HYBRID_LAMBDA = 0.001
"""λ of L_hybrid = L_simple + λ·L_vlb (Nichol & Dhariwal 2021)."""
