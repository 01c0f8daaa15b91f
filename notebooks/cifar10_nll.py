# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# (nb-cifar10-nll)=
# # CIFAR-10: bits/dim of even, quadratic and DP strides
#
# ## Overview
#
# This notebook reproduces the layout of Table 3 of Watson et al. (2021) for three CIFAR-10 models, one per training objective ($L_\text{simple}$, $L_\text{vlb}$, $L_\text{hybrid}$).
# For every model it estimates the table $L(t, s)$ on **training** images, runs the dynamic program for every budget $K$, and scores the even, quadratic and DP strides on **held-out** images with fresh noise.
#
# **What you'll compute**
#
# - test bits/dim ± SE for rows objective × stride and columns $K$ (and the full chain);
# - the paired difference between the DP path and each baseline, flagged when it is within 2 SE;
# - one bits/dim-versus-$K$ figure per objective.
#
# All logic lives in {py:mod}`ddpmdp.experiments`; this notebook only calls it.

# %% tags=["parameters"]
models = {"L_simple": "cifar10-simple", "L_vlb": "cifar10-vlb", "L_hybrid": "cifar10-hybrid"}  # objective -> model spec (embedded name, iddpm:PRESET:PATH, ho:DIR, gaussian:DATA, module:callable)
noise_schedules = {}  # objective -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data = "cifar10:train"  # data spec of the selection split: the table and the DP use it
test_data = "cifar10:test"  # data spec of the held-out split: every reported number uses it
data_dir = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images = 64  # training images in the L(t, s) table (the paper: 50,000; its Monte Carlo ablation shows that far fewer choose the same paths)
n_eval_images = 48  # test images scored per path (the paper: all 10,000)
grid = "log:200+stride:4"  # DP search grid (elbo_table.parse_grid spec): 348 nodes: every node up to 29, then log-spaced, plus every 4th; "all" searches all T + 1
budgets = [8, 16, 32, 64, 128, 256]  # step budgets K
full_chain = True  # also score the full T-step chain (T forward passes per test image)
variance = None  # fixed_small, fixed_large or learned_range (None: learned_range for learned-variance models, else fixed_large)
clip = True  # clip x0_hat to [-1, 1] in table, evaluation and sampling
paper_overlay = False  # draw the paper's Table 3 values (only meaningful for the paper's checkpoints)
device = "cpu"  # cpu or cuda
dtype = "float32"  # network precision: float32 (the book), or float64 (the smoke runs: digits that do not depend on the CPU)
batch_size = 64  # images per forward pass
seed = 0  # noise seed (table and evaluation draw from separate noise streams)
num_threads = 2  # torch CPU threads (1 makes CPU runs bit-reproducible)
cache_dir = "runs/cache"  # folder that keeps tables for reuse across notebooks, relative to the repository root (None: no cache)
out_dir = "book/_generated"  # tables and figures for the book (relative to the repository root)

# %% [markdown]
# We'll need the package's experiment drivers, its plotting and report functions, and IPython's display helpers.

# %%
import torch
from IPython.display import Image, Markdown, display

from ddpmdp import experiments as ex
from ddpmdp.paths import generated_dir
from ddpmdp.plotting import plot_bpd_vs_budget
from ddpmdp.reports import PAPER_TABLE3, flags_markdown, scores_by_stride

torch.set_num_threads(num_threads)
out = generated_dir(out_dir)
print("outputs go to", ex.relative(out))

# %% [markdown]
# Tables and figures land in the folder printed above, which the book's results chapter reads.
#
# ## Data
#
# The selection split feeds the table; the held-out split is never used for selection.

# %%
train = ex.load_data(train_data, n_table_images, data_dir=data_dir)
test = ex.load_data(test_data, n_eval_images, data_dir=data_dir)
print(ex.describe_data(train, data_dir))
print(ex.describe_data(test, data_dir))

# %% [markdown]
# The notes say where the images differ from the official files; with such copies the numbers are not comparable to published ones.
#
# ## Table, DP and held-out evaluation for each model
#
# {py:func}`ddpmdp.experiments.run_nll` estimates $L(t, s)$ on the training images, solves the DP for every budget, and evaluates all strides in one pass over the test images, so the comparisons are paired.

# %%
results = {}
for objective, spec in models.items():
    model = ex.load_experiment_model(spec, noise_schedule=noise_schedules.get(objective), device=device,
                                     dtype=dtype, data_dir=data_dir)
    print(f"{objective}: {ex.describe_model(model, variance)}")
    results[objective] = ex.run_nll(model, train, test, objective=objective, budgets=budgets, grid=grid,
                                    variance=variance, clip=clip, full_chain=full_chain, batch_size=batch_size,
                                    seed=seed, device=device, cache_dir=cache_dir)

# %% [markdown]
# Each line names the model, its noise schedule, $T$ and the variance rule used in the table, the evaluation and the DP.

# %% tags=["nbval-ignore-output"]
for objective, r in results.items():
    print(f"{objective}: {ex.format_seconds(r.seconds)}{' (table from cache)' if r.cached else ''}")

# %% [markdown]
# These are wall times on the machine that executed the notebook; the table dominates unless it came from the cache.
#
# ## Table 3 layout

# %%
table = ex.nll_table(results, budgets=budgets, title="CIFAR-10 test bits/dim")
files = ex.write_result_table(table, "cifar10_nll", out)
display(Markdown(table.to_markdown()))

# %% [markdown]
# Each cell is the mean over test images of $L_\text{prior} + \sum_i L(t_i, t_{i-1})$ in bits/dim, with its standard error.
# A ‡ marks a DP cell whose difference from a baseline is within 2 SE.

# %%
display(Markdown(flags_markdown(table.flags)))

# %% [markdown]
# Negative differences mean the DP path has the better (lower) bound; the SEs are paired, because all strides were scored on the same images and noise.

# %%
for line in ex.nll_summary(results):
    print(line)

# %% [markdown]
# The DP path is optimal for the training table, so it should beat both strides on held-out data too, by most at small $K$.
#
# ## Bits/dim against the budget

# %%
for objective, r in results.items():
    paper = ({s: PAPER_TABLE3[(objective, s)] for s in ("even", "quadratic", "dp") if (objective, s) in PAPER_TABLE3}
             if paper_overlay else None)
    fig = plot_bpd_vs_budget(scores_by_stride(r.keyed_scores(), objective), f"CIFAR-10 {objective}, test split",
                             full=r.full, paper=paper)
    display(Image(filename=str(ex.save_figure(fig, f"cifar10_nll_{objective}", out))))

# %% [markdown]
# The curves approach the full chain (dashed line) as $K$ grows; the DP curve gets there with far fewer steps than the even stride.
#
# ## The DP paths

# %%
for objective, r in results.items():
    ex.write_dp_json(r.table, r.solution, budgets, out / f"cifar10_nll_{objective}_dp.json")
    print(objective)
    print(ex.format_paths(r.dp_paths(), max_nodes=20))

# %% [markdown]
# The DP places most steps close to the data (small $t$), where the per-step cost of a coarse jump is largest.
# The JSON files can be passed to the command line as `dp:FILE.json:K`.
