"""What the book's notebooks call, in three roles (one folder each; this package re-exports nothing):

* :mod:`ddpmdp.book.experiments` — one driver module per notebook (the two NLL notebooks share
  :mod:`~ddpmdp.book.experiments.nll`): the experiment, and its table, figure and generated text;
* :mod:`ddpmdp.book.reporting` — what every experiment reports with: number formatting and the one
  2-SE verdict, result tables, figures, captions and the files written for the book;
* :mod:`ddpmdp.book.runtime` — how a notebook runs: :class:`~ddpmdp.book.runtime.run_config.RunConfig`,
  output locations, inputs (data, models, the variance rule, cached tables) and the papermill runner
  behind ``ddpmdp reproduce``.

Notebooks import what they use from these modules by name. Every driver keeps selection and
evaluation apart: the L(t, s) table is estimated on the **training** split, the DP paths are
chosen from it, and every reported number is a direct held-out evaluation. Nothing in the
paper's core imports this package.
"""
