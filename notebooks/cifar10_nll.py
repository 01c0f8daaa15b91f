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
# - the paired difference between the DP path and each baseline, with its status (gain, loss, within 2 SE);
# - one bits/dim-versus-$K$ figure per objective.
#
# All logic lives in {py:mod}`ddpmdp.book`; this notebook only calls it.
#
# ```{rerun-box} cifar10_nll
# ```

# %% tags=["parameters"]
models: dict = {"L_simple": "cifar10-simple", "L_vlb": "cifar10-vlb", "L_hybrid": "cifar10-hybrid"}  # objective -> model spec (embedded name, iddpm:PRESET:PATH, ho:DIR, diffusers:DIR, gaussian:DATA, module:callable)
noise_schedules: dict = {}  # objective -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data: str = "cifar10-lossless:train"  # data spec of the selection split: the table and the DP use it (the first 4,000 training images, lossless)
test_data: str = "cifar10-lossless:test"  # data spec of the held-out split: every reported number uses it (the first 100 test images, lossless)
data_dir: "Optional[str]" = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images: int = 24  # training images in the L(t, s) table (the paper: 50,000; its Monte Carlo ablation shows that far fewer choose the same paths)
n_eval_images: int = 16  # test images scored per path, of the 100 lossless ones (the paper: all 10,000)
grid: str = "log:100"  # DP search grid (ddpmdp.grids.parse_grid spec); the nodes of the even and quadratic strides of every budget are always added; "all" searches all T + 1
budgets: list = [8, 16, 32, 64, 128, 256]  # step budgets K
full_chain: bool = True  # also score the full T-step chain (T forward passes per test image)
variance: "Optional[str]" = None  # fixed_small, fixed_large or learned_range (None: each model's own rule)
clip: bool = True  # clip x0_hat to [-1, 1] in table, evaluation and sampling
paper_overlay: bool = False  # draw the paper's Table 3 values (only meaningful for the paper's checkpoints)
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU)
batch_size: int = 64  # images per forward pass
seed: int = 0  # noise seed (table and evaluation draw from separate noise streams)
num_threads: int = 2  # torch CPU threads
cache_dir: "Optional[str]" = None  # folder that keeps tables for reuse across notebooks (None: no cache)
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/cifar10_nll beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)

# %% [markdown]
# We'll need the NLL driver, a few reporting helpers, the data loader and the run configuration, which collects the settings above.

# %%
from IPython.display import display

from ddpmdp.book.experiments.nll import (nll_caption, nll_figure, nll_summary_markdown, nll_table, run_nll_models,
                                         write_nll_paths)
from ddpmdp.book.reporting.captions import figure_provenance
from ddpmdp.book.reporting.formatting import format_seconds
from ddpmdp.book.reporting.paper import PAPER_TABLE3
from ddpmdp.book.reporting.tables import flags_markdown
from ddpmdp.book.runtime.inputs import describe_data, load_data
from ddpmdp.book.runtime.run_config import RunConfig

run = RunConfig.from_parameters("cifar10_nll", globals())
print("outputs go to", run.where())

# %% [markdown]
# Tables, figures and generated sentences land in the folder printed above; the book's results chapter includes them.
#
# ## Data
#
# The selection split feeds the table; the held-out split is never used for selection.

# %%
train = load_data(train_data, n_table_images, data_dir=data_dir)
test = load_data(test_data, n_eval_images, data_dir=data_dir)
print(describe_data(train, data_dir))
print(describe_data(test, data_dir))

# %% [markdown]
# The notes say where the images differ from the official files; with such copies the numbers are not comparable to published ones.
#
# ## Table, DP and held-out evaluation for each model
#
# {py:func}`ddpmdp.book.experiments.nll.run_nll` estimates $L(t, s)$ on the training images, solves the DP for every budget, and evaluates all strides in one pass over the test images, so the comparisons are paired.

# %%
results = run_nll_models(run, models, train, test, budgets=budgets, grid=grid, full_chain=full_chain,
                         noise_schedules=noise_schedules)

# %% [markdown]
# Each line names the model, its noise schedule, $T$ and the variance rule used in the table, the evaluation and the DP.

# %% tags=["nbval-ignore-output"]
for objective, r in results.items():
    print(f"{objective}: {format_seconds(r.seconds, r.table.meta if r.cached else None)}")

# %% [markdown]
# These are wall times on the machine that executed the notebook; the table dominates. When it came from the cache (another notebook made it), the line says what estimating it cost, from the table's own metadata.
#
# ## Table 3 layout

# %%
table = nll_table(results, budgets=budgets, title="CIFAR-10 test bits/dim")
run.table(table, "cifar10_nll", caption=nll_caption(results, train, test))

# %% [markdown]
# Each cell is the mean over test images of $L_\text{prior} + \sum_i L(t_i, t_{i-1})$ in bits/dim, with its standard error; the caption names the models, the data and the grid.
# A ‡ marks a DP cell within 2 SE of a baseline, a † one that is worse than a baseline by more than 2 SE.
#
# Beside it, the paper's Table 3 (its models, the official data, no SE): compare which stride wins at which budget, not the values.
#
# ```{paper-table} 3
# ```

# %%
run.text(flags_markdown(table.flags), "cifar10_nll_flags")

# %% [markdown]
# Negative differences mean the DP path has the better (lower) bound; the SEs are paired, because all strides were scored on the same images and noise.

# %%
run.text(nll_summary_markdown(results), "cifar10_nll_summary")

# %% [markdown]
# The DP path is optimal for the training table (its grid holds every node of both strides), so on held-out data it can lose to a stride only by the table's Monte Carlo error; the summary above says where that happens in this run.
#
# ## Bits/dim against the budget

# %%
for objective, r in results.items():
    display(run.figure(nll_figure(r, "CIFAR-10", PAPER_TABLE3 if paper_overlay else None),
                       f"cifar10_nll_{objective}", caption=figure_provenance({objective: r.model}, train, test)))

# %% [markdown]
# The curves approach the full chain (dashed line) as $K$ grows; the DP curve gets there with far fewer steps than the even stride.
#
# ## The DP paths

# %%
print(write_nll_paths(run, results, "cifar10_nll", budgets))

# %% [markdown]
# The DP places most steps close to the data (small $t$), where the per-step cost of a coarse jump is largest.
# The JSON files can be passed to the command line as `dp:FILE.json:K`.
