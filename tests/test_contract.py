"""The model contract and the checks that run before any work."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from _models import TinyNet, random_images, tiny_adapter
from ddpmdp import Numerics, TorchModelAdapter, cosine_schedule, estimate_table, evaluate_paths, sample
from ddpmdp.elbo_terms import q_sample
from ddpmdp.errors import DdpmdpError
from ddpmdp.models.adapter import DiffusionModel, network_time


def test_q_sample_and_network_time_take_an_int_or_a_tensor_of_nodes():
    sched = cosine_schedule(40)
    x0, eps = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    t = torch.tensor([1, 7, 7, 23, 40])
    per_image = q_sample(sched, x0, t, eps)
    for i, n in enumerate(t.tolist()):
        assert torch.equal(per_image[i], q_sample(sched, x0[i:i + 1], n, eps[i:i + 1])[0])
    tau = network_time(sched, t, "iddpm")
    assert tau.dtype == torch.float32
    assert tau.tolist() == [float(np.float32(network_time(sched, n, "iddpm"))) for n in t.tolist()]
    with pytest.raises(DdpmdpError, match="named time input"):
        network_time(sched, t, lambda n: n)


def test_adapter_carries_the_whole_contract_from_its_constructor():
    sched = cosine_schedule(10)
    m = TorchModelAdapter(TinyNet(3, False, 0), sched, output="eps", image_shape=(3, 8, 8),
                          numerics=Numerics(bf16=True), info={"spec": "tiny"})
    assert isinstance(m, DiffusionModel)
    assert (m.variance, m.image_shape, m.info["spec"], m.numerics.bf16) == ("fixed_large", (3, 8, 8), "tiny", True)
    assert tiny_adapter(sched).variance == "learned_range"
    with pytest.raises(DdpmdpError, match="learned-variance"):
        TorchModelAdapter(TinyNet(3, False, 0), sched, output="eps", variance="learned_range")
    with pytest.raises(DdpmdpError, match="exclude"):
        TorchModelAdapter(TinyNet(3, False, 0), sched, numerics=Numerics(dtype="float64", bf16=True))


def test_a_data_set_of_another_image_size_is_refused_before_any_work():
    sched = cosine_schedule(10)
    m = TorchModelAdapter(TinyNet(3, True, 0), sched, output="eps+v", image_shape=(3, 8, 8))
    wrong = random_images(2, shape=(3, 16, 16))
    calls = []
    m.net.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(DdpmdpError, match=r"3×16×16 \(C×H×W\).*built for 3×8×8"):
        estimate_table(m, wrong, variance="learned_range")
    with pytest.raises(DdpmdpError, match="built for"):
        evaluate_paths(m, wrong, {"p": np.array([0, 5, 10])}, variance="learned_range")
    with pytest.raises(DdpmdpError, match="built for"):
        sample(m, np.array([0, 5, 10]), 2, (3, 16, 16))
    assert calls == []


def test_cli_refuses_an_unwritable_sample_output_before_sampling(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ddpmdp", "sample", "--model", "cifar10-simple", "--schedule", "even:2",
                           "--n", "1", "--out", str(tmp_path / "missing" / "x.png")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "does not exist; nothing was sampled" in proc.stderr


def test_cli_warnings_print_as_one_line():
    from ddpmdp.cli.main import one_line_warning

    text = one_line_warning(UserWarning("the copy differs"), UserWarning, "/x/y.py", 3, "source line")
    assert text == "ddpmdp: UserWarning: the copy differs\n"
    with warnings.catch_warnings():
        assert "source line" not in text
