"""The "Re-run this notebook" box at the top of every notebook page: how to install, where the
data go, which parameter file to start from, the device, and what a run costs.

The book renders it with the ``rerun-box`` directive (``book/_ext/ddpmdp_sphinx.py``), which passes
the repository URL from ``_config.yml`` (set in one place). The costs are the book's own figures:

* **default parameters** (the notebook as shown, the embedded models on a CPU): the wall time of
  the notebook's last default run, which ``ddpmdp reproduce`` (``make reproduce``) records in
  :data:`RUNTIMES_FILE` with the date, the CPU and its core count (:func:`record_runtimes`); the box
  reads it (:func:`read_runtimes`) and never carries a typed number;
* **paper parameters** (``params/paper/NAME.yaml``, ``device: cuda``): *estimates* from the network
  calls per image and the FLOPs per call of the public checkpoints at a sustained 50 TFLOP/s on an
  A100 (150 on an H100), the method of the book's page *Reproducing the paper*, "How much GPU time";
  on a CPU the same calls take about 0.16 s per image per call on two cores (Ho et al.'s UNet).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RerunFacts", "RERUN", "rerun_markdown", "RUNTIMES_FILE", "record_runtimes", "read_runtimes"]

RUNTIMES_FILE = "book/_generated/runtimes.json"
"""Where ``ddpmdp reproduce`` records each notebook's wall time of a default run (relative to the
repository root): ``{"format": "ddpmdp-runtimes", "version": 1, "notebooks": {NAME: {"seconds",
"date", "cpu", "cores", "torch", "full_run"}}}``; ``full_run``: the run executed every notebook in
the book's order on a clone without cached tables."""
_RUNTIMES_FORMAT, _RUNTIMES_VERSION = "ddpmdp-runtimes", 1


@dataclass(frozen=True)
class RerunFacts:
    """What the box says for one notebook: the data it reads, what the recorded CPU wall time of
    the default run includes (``default_note``; the time itself comes from :data:`RUNTIMES_FILE`),
    and the estimated cost of the paper parameters on one GPU and on a CPU."""

    data: str
    default_note: str
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
        "", "estimated about a minute (64 samples along the full 1000-step chain per model)",
        "estimated about 30 minutes", uses_data_dir=False),
    "cifar10_nll": RerunFacts(
        _CIFAR, "the tables it builds are then cached for the other CIFAR-10 notebooks",
        "estimated about 50 A100-hours (about 16 H100-hours): the two T = 4000 tables on 50,000 images dominate",
        "years (about 0.2 s per image per network call; not practical)"),
    "imagenet64_nll": RerunFacts(
        "Tiny-ImageNet 64×64 by default (`tiny-imagenet64/val_data.npz` in `data_dir`); the paper run reads ImageNet "
        "64×64 from the folders named in `train_data` and `test_data`",
        "",
        "estimated about 120 A100-hours (about 40 H100-hours): the full chain on 50,000 images (88 h) and the "
        "table on 16,384 images (29 h)", "years (not practical)"),
    "mc_ablation": RerunFacts(
        "CIFAR-10 and Tiny-ImageNet 64×64 (as in the two NLL notebooks)",
        "with the 128-image reference tables",
        "estimated about 40 A100-hours, dominated by the 16,384-image ImageNet 64 table (29 h)",
        "years (not practical)"),
    "sample_quality": RerunFacts(
        _CIFAR + "; the paper's KID and FID on the standard features need pytorch-fid's Inception weights in "
        "`inception_dir`",
        "with the table from the cache",
        "estimated about 18 A100-hours (about 6 H100-hours): 50,000 samples for each of 6 samplers × 6 budgets "
        "(3,024 network calls per sample) and the table", "years (not practical)"),
    "samples_and_schedules": RerunFacts(
        _CIFAR, "with the table from the cache",
        "estimated about 4 A100-hours (the table on 50,000 images with Ho et al.'s T = 1000 model)",
        "months (about 0.16 s per image per call: 50,000 images × 1000 calls)"),
    "optimal_variance": RerunFacts(
        _CIFAR, "with the tables from the cache; longer without them",
        "estimated under 10 minutes (the small embedded models: 1,024 training and 1,000 test images)",
        "estimated 2–3 hours"),
    "sampling_schedules": RerunFacts(
        "CIFAR-10 (the lossless files `cifar10_train_first4000_lossless.npz` and `cifar10_test_first100_lossless.npz` "
        "in `data_dir`) and Tiny-ImageNet 64×64 (`tiny-imagenet64/val_data.npz`)",
        "with the ELBO tables from the cache of the NLL notebooks",
        "estimated under an hour (the small embedded models: teacher every node, 256 selection and 1,000 fresh seeds, "
        "KID from 1,000 samples per path)", "estimated days (not practical)"),
}
"""The box's facts per notebook (see the module docstring for where the numbers come from)."""


def _cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def record_runtimes(seconds: Mapping[str, float], root: Path, *, full_run: bool) -> Path:
    """Merge the wall seconds of default-run notebooks into ``root/RUNTIMES_FILE`` (atomically),
    each with today's date (UTC), the CPU, its core count and the torch version; returns the path."""
    from importlib.metadata import PackageNotFoundError, version

    from ddpmdp.fileio import atomic_write_text

    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch is a dependency
        torch_version = "unknown"

    path = root / RUNTIMES_FILE
    book = read_runtimes(root)
    machine = {"date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(), "cpu": _cpu_name(),
               "cores": os.cpu_count() or 1, "torch": torch_version, "full_run": bool(full_run)}
    book.update({name: {"seconds": round(float(s), 1), **machine} for name, s in seconds.items()})
    doc = {"format": _RUNTIMES_FORMAT, "version": _RUNTIMES_VERSION, "notebooks": dict(sorted(book.items()))}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return path


def read_runtimes(root: Path) -> dict[str, dict[str, Any]]:
    """The recorded default-run wall times per notebook (empty when nothing is recorded); refuses
    a file of another format or a newer version."""
    from ddpmdp.errors import require

    path = root / RUNTIMES_FILE
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    require(isinstance(doc, dict) and doc.get("format") == _RUNTIMES_FORMAT
            and int(doc.get("version", 0)) <= _RUNTIMES_VERSION,
            f"{path} is not a ddpmdp runtimes file of version <= {_RUNTIMES_VERSION}")
    return dict(doc["notebooks"])


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} minutes"


def _recorded(name: str, runtimes: Mapping[str, Mapping[str, Any]], note: str) -> str:
    """The box's default-run time: the recorded seconds with their date and machine, or a pointer to
    ``make reproduce`` when none is recorded."""
    r = runtimes.get(name)
    if r is None:
        return "not recorded yet (`make reproduce` records it)"
    full = bool(r.get("full_run"))
    where = (f"recorded {r['date']} by `make reproduce`{' on a fresh clone' if full else ''}, "
             f"{r['cpu']}, {r['cores']} cores")
    tail = (f"; {note}" if note else "") if full else ", in a run of only some notebooks"
    return f"{_duration(float(r['seconds']))} ({where}{tail})"


def rerun_markdown(name: str, repository_url: str, branch: str = "main", *,
                   runtimes: Mapping[str, Mapping[str, Any]] | None = None, root: Path | None = None) -> str:
    """The MyST Markdown of notebook ``name``'s re-run box (an admonition): install from the
    repository, data folder (``data_dir``), the parameter file ``params/paper/NAME.yaml``, the
    device (``device: cuda``) and the cost on CPU (``runtimes``, else :func:`read_runtimes` of
    ``root``, default the repository) and on one GPU."""
    facts = RERUN[name]
    if runtimes is None:
        from ddpmdp.book.runtime.locations import find_repo_root

        where = root or find_repo_root(Path(__file__))
        runtimes = read_runtimes(where) if where is not None else {}
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
        f"**Time.** With the parameters shown on this page (the small embedded models) on a CPU: "
        f"{_recorded(name, runtimes, facts.default_note)}. With `params/paper/{name}.yaml` on one GPU: "
        f"{facts.paper_gpu}; on a CPU: {facts.paper_cpu}.",
        ":::",
        "",
    ])
