"""Shared reporting, used by every experiment driver:

* :mod:`~ddpmdp.book.reporting.formatting` — numbers as text (mean ± SE, budgets, paths, wall times);
* :mod:`~ddpmdp.book.reporting.comparisons` — the difference of two scores and the one 2-SE verdict;
* :mod:`~ddpmdp.book.reporting.tables` — bits/dim ± SE result tables and DP-gain flags;
* :mod:`~ddpmdp.book.reporting.paper` — the paper's published numbers;
* :mod:`~ddpmdp.book.reporting.plotting`, :mod:`~ddpmdp.book.reporting.sample_grids` — figures;
* :mod:`~ddpmdp.book.reporting.captions` — provenance captions;
* :mod:`~ddpmdp.book.reporting.files` — tables, generated text, figures and DP paths written to disk.
"""
