"""One run configuration per notebook: where outputs go, how models and data load, how results show.

A notebook's parameter cell sets plain values; ``run = RunConfig.from_parameters("NAME", globals())``
picks the ones this class knows; the notebook then loads models with the run's device and dtype,
passes ``run.settings()`` to the drivers and writes its outputs through the run::

    run = RunConfig.from_parameters("cifar10_nll", globals())
    model = run.model("cifar10-hybrid")
    run.figure(fig, "cifar10_nll_L_hybrid")        # saved under run.out, returned for display

Where outputs go (a notebook downloaded from the book must run anywhere and never overwrite the
book by accident):

* ``out_dir=None`` (the default) → ``./ddpmdp-outputs/NAME/`` beside the notebook;
* a relative ``out_dir`` resolves against the repository root inside a checkout, else against
  the working directory;
* a folder inside the checkout's ``book/`` is refused unless ``write_book=True`` (what
  ``ddpmdp reproduce`` passes when it regenerates the book).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ddpmdp.book.reporting.files import save_figure, write_result_table, write_text
from ddpmdp.book.reporting.tables import ResultTable, markdown_table
from ddpmdp.book.runtime.inputs import load_experiment_model
from ddpmdp.book.runtime.locations import find_repo_root
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.models.adapter import DiffusionModel

__all__ = ["RunConfig", "resolve_out_dir", "OUTPUTS_FOLDER"]

OUTPUTS_FOLDER = "ddpmdp-outputs"
"""Default output folder, created beside the notebook (the working directory of its kernel)."""


def resolve_out_dir(out_dir: str | os.PathLike | None, notebook: str, *, write_book: bool = False,
                    cwd: str | os.PathLike | None = None) -> Path:
    """Where a notebook writes (see the module docstring); raises when it would write into the
    book without ``write_book``."""
    here = Path(cwd) if cwd is not None else Path.cwd()
    root = find_repo_root(here)
    if out_dir is None:
        path = here / OUTPUTS_FOLDER / notebook
    else:
        p = Path(out_dir).expanduser()
        path = p if p.is_absolute() else (root or here) / p
    path = path.resolve()
    if root is not None and not write_book:
        book = (root / "book").resolve()
        if path == book or book in path.parents:
            raise DdpmdpError(f"out_dir {str(out_dir)!r} is inside the book's folder {book}; pass write_book=True "
                              "to regenerate the book's files (ddpmdp reproduce does), or choose another out_dir")
    return path


@dataclass
class RunConfig:
    """The settings every notebook shares (the parameter cell's names).

    ``device``/``batch_size``/``seed``/``num_threads`` as in the CLI; ``dtype`` ``float32`` or
    ``float64`` (the network's forward pass; smoke references use float64 so that printed digits
    hold on any CPU); ``clip`` clips x̂₀; ``variance`` None = each model's own rule
    (:func:`ddpmdp.book.runtime.inputs.variance_rule`);
    ``data_dir`` None = ``$DDPMDP_DATA``; ``cache_dir`` keeps tables across notebooks (None: no
    cache); ``out_dir``/``write_book`` see :func:`resolve_out_dir`.
    """

    notebook: str
    device: str = "cpu"
    batch_size: int = 64
    seed: int = 0
    num_threads: int = 2
    dtype: Literal["float32", "float64"] = "float32"
    clip: bool = True
    variance: str | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    out_dir: str | None = None
    write_book: bool = False

    @classmethod
    def from_parameters(cls, notebook: str, params: Mapping[str, Any], *, start: bool = True) -> "RunConfig":
        """The known keys of ``params`` (a notebook's ``globals()``); ``start`` also applies the
        thread count and creates the output folder."""
        names = {f.name for f in dataclasses.fields(cls)} - {"notebook"}
        run = cls(notebook, **{k: params[k] for k in names if k in params})
        if start:
            run.start()
        return run

    def __post_init__(self) -> None:
        require(self.dtype in ("float32", "float64"), f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        require(int(self.batch_size) >= 1 and int(self.num_threads) >= 1, "batch_size and num_threads must be >= 1")
        if self.device.startswith("cuda"):
            require(torch.cuda.is_available(), f"device {self.device!r}: CUDA is not available here; set the device "
                    "parameter to 'cpu'")
        self._out: Path | None = None

    def start(self) -> Path:
        """Set torch's CPU threads and create the output folder; returns it."""
        torch.set_num_threads(int(self.num_threads))
        self._out = resolve_out_dir(self.out_dir, self.notebook, write_book=self.write_book)
        self._out.mkdir(parents=True, exist_ok=True)
        return self._out

    @property
    def out(self) -> Path:
        """The output folder (created on first use)."""
        return self._out if self._out is not None else self.start()

    @property
    def cache(self) -> Path | None:
        """The table cache folder, resolved like ``out_dir`` (None: no cache)."""
        if self.cache_dir is None:
            return None
        p = Path(self.cache_dir).expanduser()
        root = find_repo_root(Path.cwd())
        return p if p.is_absolute() else (root or Path.cwd()) / p

    def where(self) -> str:
        """Where outputs go, relative to the repository or working directory when possible."""
        root = find_repo_root(Path.cwd()) or Path.cwd()
        try:
            return str(self.out.relative_to(root.resolve()))
        except ValueError:
            return str(self.out)

    # ---- inputs ----------------------------------------------------------------------------------
    def model(self, spec: str, noise_schedule: str | None = None) -> DiffusionModel:
        """A model adapter from a model spec, with this run's device, dtype and data folder
        (:func:`ddpmdp.book.runtime.inputs.load_experiment_model`)."""
        return load_experiment_model(spec, noise_schedule=noise_schedule, device=self.device, dtype=self.dtype,
                                     data_dir=self.data_dir)

    def settings(self) -> dict[str, Any]:
        """The keyword arguments the drivers share (clip, seed, batch size, device)."""
        return {"clip": self.clip, "seed": self.seed, "batch_size": self.batch_size, "device": self.device}

    # ---- outputs ---------------------------------------------------------------------------------
    def figure(self, fig: Any, name: str, caption: str = "") -> Any:
        """Save ``fig`` as ``out/NAME.png`` (and ``caption``, one line of Markdown naming the models,
        images and split behind it, as ``out/NAME_figcaption.md``, which the book's figure captions
        show as ``{{ figcaption_NAME }}``); return it as an IPython image for display."""
        from IPython.display import Image

        if caption:
            write_text(caption.strip() + "\n", f"{name}_figcaption", self.out)
        return Image(filename=str(save_figure(fig, name, self.out)))

    def table(self, table: ResultTable | tuple[Sequence[str], Sequence[Sequence[str]]], name: str,
              title: str = "", caption: str = "") -> Any:
        """Write ``out/NAME.csv`` (+ ``_wide.csv``, ``.md``, ``_caption.md`` ending with ``caption``)
        and return the table as Markdown."""
        from IPython.display import Markdown

        write_result_table(table, name, self.out, caption=caption)  # type: ignore[arg-type]
        if isinstance(table, ResultTable):
            return Markdown(table.to_markdown())
        header, rows = table
        return Markdown(markdown_table(header, rows, title))

    def text(self, markdown: str, name: str) -> Any:
        """Write generated prose to ``out/NAME.md`` (the book includes it) and return it as Markdown."""
        from IPython.display import Markdown

        write_text(markdown, name, self.out)
        return Markdown(markdown)
