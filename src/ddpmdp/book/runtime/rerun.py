"""The "Re-run this notebook" box at the top of every notebook page: how to install, where the
data go, which parameter file to start from, the device, and what a run costs.

The book renders it with the ``rerun-box`` directive (``book/_ext/ddpmdp_sphinx.py``), which passes
the repository URL from ``_config.yml`` (set in one place). The costs are the book's own figures:

* **default parameters** (the notebook as shown, the embedded models on a CPU): the wall times
  recorded by ``make reproduce`` on a fresh clone on a 2-core CPU (README, "Two commands": 18 min 46 s for
  all eight, 2026-12-05);
* **paper parameters** (``params/paper/NAME.yaml``, ``device: cuda``): *estimates* from the network
  calls per image and the FLOPs per call of the public checkpoints at a sustained 50 TFLOP/s on an
  A100 (150 on an H100), the method of the book's page *Reproducing the paper*, "How much GPU time";
  on a CPU the same calls take about 0.16 s per image per call on two cores (Ho et al.'s UNet).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RerunFacts", "RERUN", "rerun_markdown"]


@dataclass(frozen=True)
class RerunFacts:
    """What the box says for one notebook: the data it reads, the recorded CPU wall time of the
    default run, and the estimated cost of the paper parameters on one GPU and on a CPU."""

    data: str
    default_cpu: str
    paper_gpu: str
    paper_cpu: str
    uses_data_dir: bool = True


_CIFAR = ("CIFAR-10: the default run reads the lossless files `cifar10_train_first4000_lossless.npz` and "
          "`cifar10_test_first100_lossless.npz` (the first 4,000 training and 100 test images with their exact pixels), "
          "the paper run the official python archive (`cifar-10-batches-py/`, all five training batches); `data_dir` is "
          "the folder that holds them")
RERUN: dict[str, RerunFacts] = {
    "embedded_models": RerunFacts(
        "no data set: the embedded models and their cards ship inside the package",
        "71 s (recorded)", "estimated about a minute (64 samples along the full 1000-step chain per model)",
        "estimated about 30 minutes", uses_data_dir=False),
    "cifar10_nll": RerunFacts(
        _CIFAR, "3.7 minutes (recorded; the tables are then cached for the other CIFAR-10 notebooks)",
        "estimated about 50 A100-hours (about 16 H100-hours): the two T = 4000 tables on 50,000 images dominate",
        "years (about 0.2 s per image per network call; not practical)"),
    "imagenet64_nll": RerunFacts(
        "Tiny-ImageNet 64×64 by default (`tiny-imagenet64/val_data.npz` in `data_dir`); the paper run reads ImageNet "
        "64×64 from the folders named in `train_data` and `test_data`",
        "2 minutes (recorded)",
        "estimated about 120 A100-hours (about 40 H100-hours): the full chain on 50,000 images (88 h) and the "
        "table on 16,384 images (29 h)", "years (not practical)"),
    "mc_ablation": RerunFacts(
        "CIFAR-10 and Tiny-ImageNet 64×64 (as in the two NLL notebooks)",
        "2.7 minutes (recorded, with the 128-image reference tables)",
        "estimated about 40 A100-hours, dominated by the 16,384-image ImageNet 64 table (29 h)",
        "years (not practical)"),
    "sample_quality": RerunFacts(
        _CIFAR + "; the paper's KID and FID on the standard features need pytorch-fid's Inception weights in "
        "`inception_dir`",
        "2.6 minutes (recorded, with the table from the cache)",
        "estimated about 18 A100-hours (about 6 H100-hours): 50,000 samples for each of 6 samplers × 6 budgets "
        "(3,024 network calls per sample) and the table", "years (not practical)"),
    "samples_and_schedules": RerunFacts(
        _CIFAR, "45 s (recorded, with the table from the cache)",
        "estimated about 4 A100-hours (the table on 50,000 images with Ho et al.'s T = 1000 model)",
        "months (about 0.16 s per image per call: 50,000 images × 1000 calls)"),
    "optimal_variance": RerunFacts(
        _CIFAR, "41 s (recorded, with the tables from the cache; about 3 minutes more without them)",
        "estimated under 10 minutes (the small embedded models: 1,024 training and 1,000 test images)",
        "estimated 2–3 hours"),
    "sampling_schedules": RerunFacts(
        "CIFAR-10 (the lossless files `cifar10_train_first4000_lossless.npz` and `cifar10_test_first100_lossless.npz` "
        "in `data_dir`) and Tiny-ImageNet 64×64 (`tiny-imagenet64/val_data.npz`)",
        "3.8 minutes (recorded, with the ELBO tables from the cache of the NLL notebooks)",
        "estimated under an hour (the small embedded models: teacher every node, 256 selection and 1,000 fresh seeds, "
        "KID from 1,000 samples per path)", "estimated days (not practical)"),
}
"""The box's facts per notebook (see the module docstring for where the numbers come from)."""


def rerun_markdown(name: str, repository_url: str, branch: str = "main") -> str:
    """The MyST Markdown of notebook ``name``'s re-run box (an admonition): install from the
    repository, data folder (``data_dir``), the parameter file ``params/paper/NAME.yaml``, the
    device (``device: cuda``) and the cost on CPU and on one GPU."""
    facts = RERUN[name]
    url = repository_url.rstrip("/")
    params = f"{url}/blob/{branch}/params/paper/{name}.yaml"
    data_p = " -p data_dir /path/to/data" if facts.uses_data_dir else ""
    data_line = (f"**Data.** {facts.data}. Set the `data_dir` parameter (or `$DDPMDP_DATA`) to that folder; "
                 "nothing is downloaded." if facts.uses_data_dir else f"**Data.** {facts.data}.")
    return "\n".join([
        ":::{admonition} Re-run this notebook",
        ":class: tip",
        "",
        "**Install** (Python 3.11–3.13) from the repository, in a fresh virtual environment:",
        "",
        "```bash",
        f"pip install 'ddpmdp[notebooks] @ git+{url}'",
        f"# or, in a clone of {url}:  pip install -e '.[notebooks]'",
        "```",
        "",
        data_line,
        "",
        f"**Parameters.** Download this notebook (the download button at the top of the page) and start from "
        f"[`params/paper/{name}.yaml`]({params}), the paper's sizes: it sets `device: cuda` (the notebook's "
        "default is `cpu`); edit the checkpoint and data paths in it, then",
        "",
        "```bash",
        f"papermill {name}.ipynb my_{name}.ipynb -f {name}.yaml{data_p}",
        "```",
        "",
        f"`papermill --help-notebook {name}.ipynb` lists every parameter; outputs go to "
        f"`ddpmdp-outputs/{name}/` beside the notebook (`out_dir` changes that)."
        + (" Model specs: an embedded name, `iddpm:PRESET:FILE`, `ho:DIR`, `diffusers:DIR`, `gaussian:DATA` or "
           "`module:callable`." if facts.uses_data_dir else ""),
        "",
        f"**Time.** With the parameters shown on this page (the small embedded models) on a 2-core CPU: "
        f"{facts.default_cpu}. With `params/paper/{name}.yaml` on one GPU: {facts.paper_gpu}; on a CPU: "
        f"{facts.paper_cpu}.",
        ":::",
        "",
    ])
