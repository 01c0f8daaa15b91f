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

from ddpmdp.book import (
    run_config,
    inputs,
    nll,
    mc_ablation,
    sample_quality,
    model_cards,
    summaries,
    outputs,
    reports,
    plotting,
    sample_figures,
    optimal_variance,
)
from ddpmdp.book.run_config import *  # noqa: F401,F403
from ddpmdp.book.inputs import *  # noqa: F401,F403
from ddpmdp.book.nll import *  # noqa: F401,F403
from ddpmdp.book.mc_ablation import *  # noqa: F401,F403
from ddpmdp.book.sample_quality import *  # noqa: F401,F403
from ddpmdp.book.model_cards import *  # noqa: F401,F403
from ddpmdp.book.summaries import *  # noqa: F401,F403
from ddpmdp.book.outputs import *  # noqa: F401,F403
from ddpmdp.book.reports import *  # noqa: F401,F403
from ddpmdp.book.plotting import *  # noqa: F401,F403
from ddpmdp.book.sample_figures import *  # noqa: F401,F403
from ddpmdp.book.optimal_variance import *  # noqa: F401,F403

__all__ = [
    name
    for module in (
        run_config,
        inputs,
        nll,
        mc_ablation,
        sample_quality,
        model_cards,
        summaries,
        outputs,
        reports,
        plotting,
        sample_figures,
        optimal_variance,
    )
    for name in module.__all__
]
