"""Experiment drivers, one module per notebook (the two NLL notebooks share one):

* :mod:`~ddpmdp.book.experiments.embedded_models` — the embedded models' cards and samples;
* :mod:`~ddpmdp.book.experiments.nll` — Paper Tables 3 and 4 (``cifar10_nll``, ``imagenet64_nll``);
* :mod:`~ddpmdp.book.experiments.mc_ablation` — Paper Fig. 3;
* :mod:`~ddpmdp.book.experiments.sample_quality` — Paper Table 5 and Fig. 2 (KID ± SE);
* :mod:`~ddpmdp.book.experiments.samples_and_schedules` — Paper Figs. 4–6;
* :mod:`~ddpmdp.book.experiments.optimal_variance` — variances chosen with the path (beyond the paper);
* :mod:`~ddpmdp.book.experiments.sampling_schedules` and its report module — schedules chosen for sample
  fidelity by the trajectory table (beyond the paper);
* :mod:`~ddpmdp.book.experiments.paths` — the DP and stride paths they share.
"""
