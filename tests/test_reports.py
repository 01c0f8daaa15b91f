"""Reporting: "bpd ± SE" cells and tables, tidy CSV with split and image count, the one 2-SE verdict and
the DP-gain flags built on it."""
from __future__ import annotations

import csv
import io
import math
import re

import numpy as np
import pytest

from ddpmdp.errors import DdpmdpError
from ddpmdp.evaluate import PathScore
from ddpmdp.book.reporting.comparisons import score_difference, verdict
from ddpmdp.book.reporting.formatting import mean_pm_se
from ddpmdp.book.reporting.paper import PAPER_TABLE3
from ddpmdp.book.reporting.tables import FULL, Cell, bpd_table, cell_of, flag_dp_gains, flags_markdown, scores_by_stride

D = 3072
LN2D = D * math.log(2.0)


def _score(per_image_bpd: np.ndarray, K: int, T: int = 40, split: str = "test") -> PathScore:
    """A direct-evaluation PathScore whose per-image totals are ``per_image_bpd`` (bits/dim)."""
    nats = np.asarray(per_image_bpd, dtype=np.float64) * LN2D
    nodes = np.unique(np.r_[0, np.linspace(1, T, K).round().astype(int)])
    assert len(nodes) == K + 1
    m, se = float(nats.mean()), float(nats.std(ddof=1) / math.sqrt(len(nats)))
    return PathScore(nodes, m / LN2D, se / LN2D, m, se, D, split, len(nats), "direct: sd of per-image totals / sqrt(N)",
                     per_image=nats)


def test_cells_show_bpd_plus_minus_se_at_fixed_precision():
    assert Cell(3.17234, 0.00512).text(3) == "3.172 ± 0.005"
    assert Cell(3.17234, 0.00512).text(2) == "3.17 ± 0.01"
    assert Cell(4.0, float("nan")).text(2) == "4.00 ± n/a"
    assert cell_of((4.2, 0.1)) == Cell(4.2, 0.1)
    with pytest.raises(DdpmdpError):
        cell_of(4.2)  # type: ignore[arg-type]


def test_table_markdown_and_csv_carry_split_and_image_count(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(4.0, 0.3, 1000)
    scores = {("L_vlb", "even", 8): _score(base + 2.0, 8), ("L_vlb", "dp", 8): _score(base + 0.5, 8),
              ("L_vlb", "even", 16): _score(base + 1.5, 16), ("L_vlb", "dp", 16): _score(base + 0.3, 16)}
    full = {"L_vlb": _score(base, 40)}
    table = bpd_table(scores, full, budgets=[8, 16, 32], precision=3)
    md = table.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| Objective | Stride | K=8 | K=16 | K=32 | All |"
    even = scores[("L_vlb", "even", 8)]
    assert f"{even.bpd:.3f} ± {even.bpd_se:.3f}" in lines[2]
    assert lines[2].startswith("| L_vlb | even |") and lines[3].startswith("|  | dp |")
    assert lines[2].endswith(f"{full['L_vlb'].bpd:.3f} ± {full['L_vlb'].bpd_se:.3f} |")
    assert "| — |" in lines[2]  # K = 32 missing
    assert "split test, 1,000 images" in md and "T = 40" in md and "Bits/dim" in md
    text = table.to_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["objective", "stride", "K", "bpd", "se", "units", "split", "n_images", "se_kind"]
    assert len(rows) == 5
    r = rows[0]
    assert (r["objective"], r["stride"], r["K"], r["split"], r["n_images"], r["units"]) == (
        "L_vlb", "even", "8", "test", "1000", "bits/dim")
    assert float(r["bpd"]) == pytest.approx(even.bpd, rel=1e-7)
    assert float(r["se"]) == pytest.approx(even.bpd_se, rel=1e-7)
    assert rows[-1]["stride"] == FULL and rows[-1]["K"] == "40"


def test_rows_are_grouped_by_objective_and_mixed_provenance_is_stated():
    scores = {("a", "even", 8): (5.0, 0.1), ("b", "even", 8): (6.0, 0.1), ("a", "dp", 8): (4.0, 0.1)}
    table = bpd_table(scores)
    assert table.rows == [("a", "even"), ("a", "dp"), ("b", "even")]
    assert table.budgets == (8, 16, 32, 64, 128, 256)
    md = table.to_markdown()
    assert "image count unknown" in md
    mixed = bpd_table({("a", "even", 8): _score(np.arange(10.0), 8), ("a", "dp", 8): _score(np.arange(20.0), 8)})
    assert "Mixed provenance" in mixed.to_markdown()
    assert "10 images" in mixed.provenance() and "20 images" in mixed.provenance()


def test_flags_use_paired_differences_when_per_image_totals_exist():
    """Large between-image spread, small within-image difference: only the paired SE sees the gain."""
    rng = np.random.default_rng(1)
    base = rng.normal(4.0, 1.0, 500)
    even = _score(base + 0.02 + rng.normal(0, 0.01, 500), 8)
    dp = _score(base + rng.normal(0, 0.01, 500), 8)
    (flag,) = flag_dp_gains({("m", "even", 8): even, ("m", "dp", 8): dp})
    assert flag.paired and flag.status == "gain" and not flag.within
    assert flag.diff == pytest.approx(dp.bpd - even.bpd) and flag.se < 0.002
    # the same numbers without per-image totals: unpaired SE ≈ 0.063, the gain is within 2 SE
    (unpaired,) = flag_dp_gains({("m", "even", 8): (even.bpd, even.bpd_se), ("m", "dp", 8): (dp.bpd, dp.bpd_se)})
    assert not unpaired.paired and unpaired.within and unpaired.status == "within 2 SE"
    assert unpaired.se == pytest.approx(math.hypot(even.bpd_se, dp.bpd_se))


def test_flags_within_two_se_gain_and_loss():
    scores = {("m", "even", 8): (3.01, 0.01), ("m", "quadratic", 8): (3.10, 0.01), ("m", "dp", 8): (3.00, 0.01),
              ("m", "even", 16): (2.90, 0.01), ("m", "dp", 16): (2.99, 0.01), ("other", "even", 8): (9.0, 0.1)}
    flags = {(f.K, f.baseline): f for f in flag_dp_gains(scores)}
    assert set(flags) == {(8, "even"), (8, "quadratic"), (16, "even")}
    assert flags[(8, "even")].status == "within 2 SE"  # |−0.01| ≤ 2·0.0141
    assert flags[(8, "quadratic")].status == "gain"  # −0.10 < −2·0.0141
    assert flags[(16, "even")].status == "loss"
    assert len(flag_dp_gains(scores, baselines=["quadratic"])) == 1
    edge = flag_dp_gains({("m", "even", 8): (2.5, 0.0), ("m", "dp", 8): (2.25, 0.125)})[0]
    assert edge.within  # |Δ| = 0.25 = 2·SE exactly (binary-exact numbers): flagged as within
    table = bpd_table(scores, precision=2)
    md = table.to_markdown()
    assert "3.00 ± 0.01 ‡" in md  # DP at K = 8 is within 2 SE of the even stride
    assert "2.99 ± 0.01 † |" in md  # DP at K = 16 loses to the even stride beyond 2 SE
    assert "‡ DP's difference" in md and "† DP is worse" in md
    no_loss = bpd_table({k: v for k, v in scores.items() if k[2] == 8}, precision=2).to_markdown()
    assert "†" not in no_loss  # a legend only for marks that appear
    fm = flags_markdown(table.flags)
    assert "| m | 8 | even | -0.010 ± 0.014 | unpaired | within 2 SE |" in fm
    assert "bits/dim" in fm.splitlines()[0]


def test_scores_by_stride_and_paper_tables():
    scores = {("a", "even", 8): (5.0, 0.1), ("a", "dp", 8): (4.0, 0.1), ("a", "dp", 16): (3.5, 0.1),
              ("b", "dp", 8): (1.0, 0.1)}
    assert scores_by_stride(scores, "a") == {"even": {8: (5.0, 0.1)}, "dp": {8: (4.0, 0.1), 16: (3.5, 0.1)}}
    with pytest.raises(DdpmdpError):
        scores_by_stride(scores, "c")
    assert PAPER_TABLE3[("L_vlb", "dp")][32] == 3.17 and PAPER_TABLE3[("L_hybrid", "even")]["all"] == 3.17
    assert PAPER_TABLE3[("L_simple", "dp")][256] == 3.72


def test_mean_pm_se_never_rounds_a_nonzero_se_to_zero():
    assert mean_pm_se(3.17241, 0.0052) == "3.172 ± 0.005"
    assert mean_pm_se(0.02, 0.00038, signed=True) == "+0.0200 ± 0.0004"
    assert mean_pm_se(0.02, 0.00004, signed=True) == "+0.02000 ± 0.00004"
    assert mean_pm_se(-0.0111, 0.0004999, signed=True) == "-0.0111 ± 0.0005"
    assert mean_pm_se(1.0, float("nan")) == "1.000 ± n/a"
    assert mean_pm_se(0.5, 0.0) == "0.500 ± 0.000"  # an exact zero stays zero (identical paths)
    for se in (3e-5, 4.9e-4, 0.0123):
        digits = mean_pm_se(1.0, se).split("± ")[1]
        assert float(digits) > 0, se
    assert mean_pm_se(-3e-11, 2e-11, signed=True) == "< 0.0005 (SE < 0.0005)"  # rounding-level: no noise digits


def test_mean_pm_se_prints_no_signed_zero():
    """A value that rounds to zero prints its bound, never "+0.000" or "-0.0000"."""
    assert mean_pm_se(0.0003, 0.001, signed=True) == "< 0.0005 ± 0.001"
    assert mean_pm_se(-0.00004, 0.0001, signed=True) == "< 0.00005 ± 0.0001"
    assert mean_pm_se(-0.00004, 0.00006, signed=True) == "-0.00004 ± 0.00006"  # the SE's precision shows it
    assert mean_pm_se(0.0, 0.0, signed=True) == "0 ± 0"  # identical paths
    assert mean_pm_se(0.0, 0.002, signed=True) == "0 ± 0.002"
    for v, se in ((1e-4, 1e-3), (-2e-4, 3e-3), (-4e-5, 1e-4), (-3e-6, 2e-5), (2e-9, 1e-9)):
        text = mean_pm_se(v, se, signed=True)
        assert not re.search(r"[-+]0\.0+(?!\d*[1-9])", text), text


def test_verdict_is_the_one_two_se_rule():
    """gain below −2 SE, loss above +2 SE, within otherwise (boundary, NaN and an infinite SE included);
    the DP-gain flags use it."""
    assert verdict(-0.3, 0.1) == "gain" and verdict(0.3, 0.1) == "loss" and verdict(0.1, 0.1) == "within"
    assert verdict(-0.25, 0.125) == verdict(0.25, 0.125) == "within"  # |Δ| = 2·SE exactly (binary-exact)
    assert verdict(-0.25, 0.125, n_sigma=1.0) == "gain"
    assert verdict(float("nan"), 0.1) == verdict(-5.0, float("nan")) == verdict(-5.0, float("inf")) == "within"
    for diff, se in ((-0.3, 0.1), (0.3, 0.1), (0.01, 0.1)):
        half = se / math.sqrt(2)  # unpaired SE of the difference: √(2·half²) = se
        (flag,) = flag_dp_gains({("m", "even", 8): (3.0, half), ("m", "dp", 8): (3.0 + diff, half)})
        assert flag.status == {"gain": "gain", "loss": "loss", "within": "within 2 SE"}[verdict(diff, flag.se)]


def test_score_difference_pairs_only_scores_of_the_same_images():
    rng = np.random.default_rng(2)
    base = rng.normal(4.0, 1.0, 50)
    a, b = _score(base + 0.01, 8), _score(base, 8)
    diff, se, paired = score_difference(a, b)
    assert paired and diff == pytest.approx(a.bpd - b.bpd) and se < 0.01
    diff, se, paired = score_difference(a, _score(base[:40], 8))
    assert not paired and se == pytest.approx(math.hypot(a.bpd_se, _score(base[:40], 8).bpd_se))
    assert score_difference((3.0, 0.3), (2.0, 0.4)) == (1.0, pytest.approx(0.5), False)
    assert not score_difference(a, _score(base, 8, split="train"))[2]


def test_run_headline_reads_the_generated_csvs(tmp_path):
    """The front page's own headline comes from the NLL notebooks' tidy CSVs, never from typed numbers."""
    from ddpmdp.book.reporting.headline import run_headline

    assert "once its notebooks have run" in run_headline(tmp_path)
    head = "objective,stride,K,bpd,se,units,split,n_images,se_kind\n"
    rows = ["L_hybrid,even,32,5.1142,0.157,bits/dim,test,12,direct", "L_hybrid,dp,32,3.8621,0.124,bits/dim,test,12,direct",
            "L_hybrid,even,8,7.2,0.3,bits/dim,test,12,direct", "L_hybrid,dp,8,4.7,0.1,bits/dim,test,12,direct",
            "L_hybrid,full,1000,3.6482,0.127,bits/dim,test,12,direct"]
    (tmp_path / "imagenet64_nll.csv").write_text(head + "\n".join(rows) + "\n")
    text = run_headline(tmp_path)
    assert ("on 64×64 images (L_hybrid), 32 DP steps give 3.862 ± 0.124 bits/dim against 5.114 ± 0.157 for the "
            "even stride and 3.648 ± 0.127 for the full 1000-step chain (12 held-out images)") in text
    assert "CIFAR-10" not in text  # no cifar10_nll.csv: that clause is left out


def test_timing_line_shows_what_a_cached_table_cost():
    from ddpmdp.book.reporting.formatting import cached_table_note, format_seconds

    line = format_seconds({"table": 0.01, "dp": 0.3, "evaluate": 45.2},
                          {"wall_seconds": 612.4, "n_images": 24, "split": "train", "batch_size": 64, "world_size": 1})
    assert line == ("table 0.0 s, dp 0.3 s, evaluate 45.2 s (total 45.5 s); the table came from the cache; "
                    "estimating it took 612.4 s (24 train images, batch 64, 1 process)")
    assert format_seconds({"table": 2.0}) == "table 2.0 s (total 2.0 s)"
    assert "not recorded" in cached_table_note({})
