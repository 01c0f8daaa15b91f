"""How a notebook runs:

* :mod:`~ddpmdp.book.runtime.run_config` — :class:`~ddpmdp.book.runtime.run_config.RunConfig`, one per
  notebook: settings, output folder, and writing + displaying tables, figures and text;
* :mod:`~ddpmdp.book.runtime.locations` — the repository root, wherever the kernel runs;
* :mod:`~ddpmdp.book.runtime.inputs` — data and models (loaded quietly, described portably) and the
  variance rule of a run;
* :mod:`~ddpmdp.book.runtime.table_cache` — selection tables, cached across notebooks;
* :mod:`~ddpmdp.book.runtime.runner` — papermill execution of ``notebooks/NAME.py`` (``ddpmdp reproduce``).
"""
