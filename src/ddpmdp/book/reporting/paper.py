"""The paper's published numbers (``method.md`` §10), for overlays, reference boxes and
comparisons; never mixed with this run's numbers. The Sphinx extension ``book/_ext/ddpmdp_sphinx.py``
renders them into the book."""
from __future__ import annotations

__all__ = ["PAPER_BUDGETS", "PAPER_TABLE3", "PAPER_TABLE4", "PAPER_TABLE5"]

PAPER_BUDGETS: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
"""The step budgets K of the paper's tables."""

_K = PAPER_BUDGETS
PAPER_TABLE3: dict[tuple[str, str], dict[int | str, float]] = {
    ("L_simple", "even"): dict(zip(_K, (6.95, 6.15, 5.46, 4.91, 4.47, 4.14))) | {"all": 3.73},
    ("L_simple", "quadratic"): dict(zip(_K, (5.39, 4.86, 4.52, 3.84, 3.74, 3.73))),
    ("L_simple", "dp"): dict(zip(_K, (4.59, 3.99, 3.79, 3.74, 3.73, 3.72))),
    ("L_vlb", "even"): dict(zip(_K, (6.20, 5.48, 4.89, 4.42, 4.03, 3.73))) | {"all": 2.94},
    ("L_vlb", "quadratic"): dict(zip(_K, (4.89, 4.09, 3.58, 3.23, 3.09, 3.05))),
    ("L_vlb", "dp"): dict(zip(_K, (4.20, 3.41, 3.17, 3.08, 3.05, 3.04))),
    ("L_hybrid", "even"): dict(zip(_K, (6.14, 5.39, 4.77, 4.29, 3.92, 3.66))) | {"all": 3.17},
    ("L_hybrid", "quadratic"): dict(zip(_K, (4.91, 4.15, 3.71, 3.42, 3.30, 3.26))),
    ("L_hybrid", "dp"): dict(zip(_K, (4.33, 3.62, 3.39, 3.30, 3.27, 3.26))),
}
"""Paper Table 3, CIFAR-10 test bits/dim; ``"all"`` is the full chain (T = 1000 for L_simple,
4000 otherwise)."""
PAPER_TABLE4: dict[tuple[str, str], dict[int | str, float]] = {
    ("L_hybrid", "even"): dict(zip(_K, (6.07, 5.38, 4.82, 4.39, 4.08, 3.87))) | {"all": 3.55},
    ("L_hybrid", "quadratic"): dict(zip(_K, (4.83, 4.14, 3.82, 3.65, 3.58, 3.56))),
    ("L_hybrid", "dp"): dict(zip(_K, (4.29, 3.80, 3.65, 3.59, 3.56, 3.56))),
}
"""Paper Table 4, ImageNet 64×64 (the authors' 3M-step L_hybrid model), bits/dim."""
PAPER_TABLE5: dict[tuple[str, str], dict[int | str, float]] = {
    ("cifar10 L_simple", "even (DDPM)"): dict(zip(_K, (51.04, 28.83, 20.85, 13.50, 10.01, 7.61))) | {"all": 3.17},
    ("cifar10 L_simple", "quadratic (DDPM)"): dict(zip(_K, (51.44, 25.80, 12.85, 7.73, 5.63, 5.25))),
    ("cifar10 L_simple", "even (DDIM η=0)"): dict(zip(_K, (26.96, 15.88, 11.12, 8.40, 6.61, 5.50))),
    ("cifar10 L_simple", "quadratic (DDIM η=0)"): dict(zip(_K, (19.24, 9.49, 6.16, 5.09, 4.70, 4.57))),
    ("cifar10 L_simple", "dp (ELBO)"): dict(zip(_K, (62.79, 45.90, 21.11, 8.52, 5.47, 5.05))),
    ("cifar10 L_simple", "dp + MSE reweighting"): dict(zip(_K, (58.11, 29.44, 12.07, 6.74, 5.24, 5.13))),
}
"""Paper Table 5, CIFAR-10 FID (50k samples, Inception-v3). Not comparable with proxy-FIDs."""
