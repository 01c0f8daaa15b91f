"""Numbers as text, one convention for the whole book: mean ± SE, lists of budgets, DP paths,
wall times and file-name stems."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["mean_pm_se", "ranges", "format_paths", "format_seconds", "cached_table_note", "slug", "times_ten",
           "pm_se_sig"]


def mean_pm_se(value: float, se: float, precision: int = 3, *, signed: bool = False) -> str:
    """``"3.172 ± 0.005"``: both at ``precision`` decimals, or with up to two more where the SE
    needs them to show its first significant digit (``"+0.0200 ± 0.0004"``); ``"± n/a"`` without a
    finite SE.

    A value that rounds to zero at those decimals prints no signed zero ("+0.000", "-0.0000") but
    its bound: ``"< 0.0005 ± 0.001"`` reads |value| < 0.0005 (half a unit of the last decimal). An
    SE below even ``precision + 2`` decimals (rounding-level differences, e.g. two rules giving the
    same path) prints at ``precision`` decimals, as a bound when it rounds to zero
    (``"< 0.0005 (SE < 0.0005)"``), so such digits never reach a table; an exact zero prints
    ``"0"``."""
    sign = "+" if signed else ""
    if not math.isfinite(se):
        return f"{value:{sign}.{precision}f} ± n/a"
    decimals = precision
    if 0 < se < 0.5 * 10.0 ** -precision:
        decimals = max(precision, -math.floor(math.log10(se)))
        if round(se, decimals) == 0:
            decimals += 1
        if decimals > precision + 2:
            decimals = precision
    bound = f"< {0.5 * 10.0 ** -decimals:.{decimals + 1}f}"
    mean = f"{value:{sign}.{decimals}f}"
    if float(mean) == 0:
        mean = "0" if value == 0 else bound
    err = f"{se:.{decimals}f}"
    if float(err) == 0 and se != 0:
        return f"{mean} (SE {bound})"
    return f"{mean} ± {'0' if se == 0 and mean == '0' else err}"


def ranges(values: Sequence[int]) -> str:
    """``[8, 16, 32]`` → ``"K = 8, 16, 32"``; empty → ``"no K"``."""
    return "K = " + ", ".join(str(v) for v in values) if values else "no K"


def format_paths(paths: Mapping[int, np.ndarray], max_nodes: int = 40, key: str = "K") -> str:
    """One line per entry, ``K =  8: 0, 1, 7, …, 1000`` (``key`` names the mapping's keys: the
    budget K, or e.g. the table size n); paths longer than ``max_nodes`` nodes show their first
    and last nodes around an ellipsis."""
    width = len(str(max(paths))) if paths else 1
    lines = []
    for K in sorted(paths):
        p = [int(x) for x in paths[K]]
        body = (", ".join(map(str, p)) if len(p) <= max_nodes else
                ", ".join(map(str, p[:max_nodes // 2])) + ", …, " + ", ".join(map(str, p[-max_nodes // 4:])))
        lines.append(f"{key} = {K:>{width}}: {body}")
    return "\n".join(lines)


def format_seconds(seconds: Mapping[str, float], cached_table: Mapping | None = None) -> str:
    """``"table 12.3 s, dp 0.1 s, … (total 12.5 s)"`` (wall times; excluded from notebook output
    checks). ``cached_table``: the metadata of a table that came from the cache, whose own cost
    (:func:`cached_table_note`) is then appended, so a reader still sees what a table costs."""
    text = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f" (total {math.fsum(seconds.values()):.1f} s)"
    return text + (f"; {cached_table_note(cached_table)}" if cached_table is not None else "")


def cached_table_note(meta: Mapping) -> str:
    """What a cached table cost when it was estimated, from its metadata (``wall_seconds``, image
    count, split, batch size, processes): ``"the table came from the cache; estimating it took
    412.0 s (24 train images, batch 64, 1 process)"``."""
    wall = meta.get("wall_seconds")
    if wall is None:
        return "the table came from the cache (its estimation time was not recorded)"
    details = [f"{meta['n_images']} {meta.get('split', '')} images".replace("  ", " ")] if meta.get("n_images") else []
    if meta.get("batch_size"):
        details.append(f"batch {meta['batch_size']}")
    if meta.get("world_size"):
        details.append(f"{meta['world_size']} process{'es' if int(meta['world_size']) != 1 else ''}")
    return (f"the table came from the cache; estimating it took {float(wall):.1f} s"
            + (f" ({', '.join(details)})" if details else ""))


def slug(text: str) -> str:
    """A file-name stem from a label: runs of non-word characters become ``_``, lower case
    (``"64×64 L_hybrid"`` → ``"64_64_l_hybrid"``)."""
    return re.sub(r"\W+", "_", text, flags=re.ASCII).strip("_").lower()


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def times_ten(exponent: int) -> str:
    """The factor a scaled column was multiplied by: ``3`` → ``" × 10³"``, ``-3`` → ``" × 10⁻³"``,
    ``0`` → ``""``."""
    return f" × 10{str(int(exponent)).translate(_SUPERSCRIPT)}" if exponent else ""


def pm_se_sig(value: float, se: float, *, signed: bool = False) -> str:
    """:func:`mean_pm_se` with as many decimals as show the SE to two significant digits (none for an
    SE of 10 or more, at most four): ``pm_se_sig(431.8, 133.1)`` → ``"432 ± 133"``,
    ``pm_se_sig(1.712, 0.301)`` → ``"1.71 ± 0.30"``. For metrics with no natural number of decimals
    (KID in squared kernel units)."""
    precision = min(4, max(0, 1 - math.floor(math.log10(se)))) if math.isfinite(se) and se > 0 else 1
    return mean_pm_se(value, se, precision, signed=signed)
