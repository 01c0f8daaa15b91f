"""What the book's notebooks call: experiment drivers, result tables, figures and the notebook runner.

Notebooks import this package (``from ddpmdp import book``) and call its drivers; each driver keeps
selection and evaluation apart: the L(t, s) table is estimated on the **training** split, the DP
paths are chosen from it, and every reported number is a direct held-out evaluation.

* :mod:`~ddpmdp.book.inputs` — data and models (loaded quietly), cached tables, stride paths;
* :mod:`~ddpmdp.book.nll` — Paper Tables 3 and 4; :mod:`~ddpmdp.book.mc_ablation` — Fig. 3;
  :mod:`~ddpmdp.book.sample_quality` — Table 5 and Figs. 2, 4, 5;
  :mod:`~ddpmdp.book.model_cards` — the embedded models;
* :mod:`~ddpmdp.book.outputs` — tables, figures and DP paths written under ``_generated/``;
* :mod:`~ddpmdp.book.reports`, :mod:`~ddpmdp.book.plotting` — result tables and figures;
* :mod:`~ddpmdp.book.runner` — papermill execution of the notebooks; :mod:`~ddpmdp.book.locations`.

Nothing in the paper's core imports this package.
"""

from ddpmdp.book.inputs import (
    load_data,
    describe_data,
    load_experiment_model,
    default_variance,
    describe_model,
    table_grid,
    cached_table,
    solve_table,
    stride_paths,
    by_budget,
)
from ddpmdp.book.nll import NLLResult, run_nll, nll_table, nll_summary
from ddpmdp.book.mc_ablation import nested_tables, MCAblationResult, run_mc_ablation
from ddpmdp.book.sample_quality import (
    mse_reweighted_cost,
    fid_extractor,
    SAMPLERS,
    SampleQualityResult,
    run_sample_quality,
    shared_noise_grids,
)
from ddpmdp.book.model_cards import embedded_card_table, model_samples
from ddpmdp.book import optimal_variance  # noqa: F401  (issue 13: analytic/optimal variances)
from ddpmdp.book.outputs import (
    format_paths,
    write_dp_json,
    write_result_table,
    markdown_table,
    save_figure,
    slug,
    relative,
    format_seconds,
)

__all__ = [
    "load_data",
    "describe_data",
    "load_experiment_model",
    "default_variance",
    "describe_model",
    "table_grid",
    "cached_table",
    "solve_table",
    "stride_paths",
    "by_budget",
    "NLLResult",
    "run_nll",
    "nll_table",
    "nll_summary",
    "nested_tables",
    "MCAblationResult",
    "run_mc_ablation",
    "mse_reweighted_cost",
    "fid_extractor",
    "SAMPLERS",
    "SampleQualityResult",
    "run_sample_quality",
    "shared_noise_grids",
    "embedded_card_table",
    "model_samples",
    "format_paths",
    "write_dp_json",
    "write_result_table",
    "markdown_table",
    "save_figure",
    "slug",
    "relative",
    "format_seconds",
]
