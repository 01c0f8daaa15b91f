"""Timestep samplers: uniform, and the loss-second-moment importance sampler of L_vlb.
"""
from __future__ import annotations

from typing import Any

import torch

from ddpmdp.errors import require

__all__ = [
    "LossSecondMomentResampler",
    "UniformSampler",
]


# ---- timestep samplers -------------------------------------------------------------
class UniformSampler:
    """t uniform on nodes 1..T, weights 1."""

    def __init__(self, T: int) -> None:
        self.T = int(T)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t int64 (B,) in 1..T, w float32 (B,) = 1)."""
        return torch.randint(1, self.T + 1, (batch,), generator=generator), torch.ones(batch)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Nothing to record."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "uniform", "T": self.T}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        require(state.get("kind") == "uniform" and int(state["T"]) == self.T, "timestep-sampler state mismatch")


class LossSecondMomentResampler:
    """Nichol & Dhariwal's importance sampler over nodes 1..T for L_vlb.

    Keeps the last ``history_per_term`` per-image losses recorded at each t. Until every t
    has that many, p_t = 1/T; afterwards p_t ∝ √(mean of the recorded L_t²), normalised, then
    p ← (1 − u)·p + u/T with u = ``uniform_prob``. A draw t ~ p gets weight w_t = 1/(T·p_t),
    so E_p[w_t·L_t] = (1/T)·Σ_t L_t for any loss vector (unbiased).
    """

    def __init__(self, T: int, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        require(history_per_term >= 1, "history_per_term must be >= 1")
        require(0.0 < uniform_prob <= 1.0, "uniform_prob must lie in (0, 1]")
        self.T = int(T)
        self.history_per_term = int(history_per_term)
        self.uniform_prob = float(uniform_prob)
        self.history = torch.zeros(self.T, self.history_per_term, dtype=torch.float64)
        self.counts = torch.zeros(self.T, dtype=torch.int64)

    def warmed_up(self) -> bool:
        """True when every t has ``history_per_term`` recorded losses."""
        return bool((self.counts == self.history_per_term).all())

    def probabilities(self) -> torch.Tensor:
        """p over nodes 1..T (index t − 1), float64 (T,), sums to 1."""
        if not self.warmed_up():
            return torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)
        w = self.history.pow(2).mean(-1).sqrt()
        w = w / w.sum()
        return w * (1.0 - self.uniform_prob) + self.uniform_prob / self.T

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(t int64 (B,) in 1..T, w float32 (B,) = 1/(T·p_t))."""
        p = self.probabilities()
        idx = torch.multinomial(p, batch, replacement=True, generator=generator)
        return idx + 1, (1.0 / (self.T * p[idx])).float()

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record per-image losses (B,) at nodes t (B,), oldest dropped when a row is full."""
        for tt, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            i, c = tt - 1, int(self.counts[tt - 1])
            if c == self.history_per_term:
                self.history[i, :-1] = self.history[i, 1:].clone()
                self.history[i, -1] = loss
            else:
                self.history[i, c] = loss
                self.counts[i] = c + 1

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "loss-second-moment", "T": self.T, "history_per_term": self.history_per_term,
                "uniform_prob": self.uniform_prob, "history": self.history.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        require(state.get("kind") == "loss-second-moment" and int(state["T"]) == self.T
                and int(state["history_per_term"]) == self.history_per_term, "timestep-sampler state mismatch")
        self.history = state["history"].clone().double()
        self.counts = state["counts"].clone().long()
