"""pytest plugin: run tests with float summation orders changed, as on another CPU.

    PYTHONPATH=tests ATEN_CPU_CAPABILITY=avx2 pytest -p numerics_perturbation tests/test_x.py

Sets torch's intra-op thread count to ``$DDPMDP_PERTURB_THREADS`` (default: 1 where torch would use
several, else 2) and turns oneDNN
(mkldnn) off before any test runs; ``ATEN_CPU_CAPABILITY`` (read by torch at import) picks another
kernel ISA. A comparison that holds only on the machine that computed its reference fails here.
See tests/README.md.
"""
from __future__ import annotations

import os


def pytest_configure(config) -> None:
    import torch

    default = 1 if torch.get_num_threads() > 1 else 2
    torch.set_num_threads(int(os.environ.get("DDPMDP_PERTURB_THREADS", default)))
    torch.backends.mkldnn.enabled = False


def pytest_report_header(config) -> str:
    import torch

    return (f"numerics perturbed: {torch.get_num_threads()} threads, mkldnn "
            f"{'on' if torch.backends.mkldnn.enabled else 'off'}, ATen ISA {torch.backends.cpu.get_cpu_capability()}")
