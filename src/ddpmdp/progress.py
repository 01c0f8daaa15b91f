"""Progress bars for long loops (tables, evaluation, sampling, training)."""
from __future__ import annotations

__all__ = ["progress_bar"]


def progress_bar(total: int, batch_size: int, enabled: bool, desc: str):
    """A tqdm bar over forward passes that shows image-passes per second and an ETA.

    Each ``update()`` counts one forward pass of a batch of ``batch_size`` images. When
    ``enabled`` is False the bar is a silent no-op (``--quiet``)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img·pass", disable=not enabled, smoothing=0.1,
                unit_scale=batch_size, dynamic_ncols=True)
