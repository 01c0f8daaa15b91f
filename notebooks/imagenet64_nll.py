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
# (nb-imagenet64-nll)=
# # 64×64 images: bits/dim of even, quadratic and DP strides
#
# ## Overview
#
# Table 4 of Watson et al. (2021) repeats the CIFAR-10 comparison on ImageNet 64×64 with an $L_\text{hybrid}$ model.
# This notebook runs the same pipeline on a 64×64 model: it estimates the table $L(t, s)$ on **training** images, runs the dynamic program for every budget $K$, and scores the even, quadratic and DP strides on **held-out** images with fresh noise.
#
# **What you'll compute**
#
# - test bits/dim ± SE for rows objective × stride and columns $K$ (and the full chain);
# - the paired difference between the DP path and each baseline, with its status (gain, loss, within 2 SE);
# - one bits/dim-versus-$K$ figure per objective.
#
# The default data are the project's Tiny-ImageNet 64×64 stand-in (`tiny-imagenet64:train|test`), not ImageNet 64: its numbers are not comparable to the paper's.
# All logic lives in {py:mod}`ddpmdp.book`; this notebook only calls it.
#
# ```{rerun-box} imagenet64_nll
# ```

# %% tags=["parameters"]
models: dict = {"L_hybrid": "imagenet64-hybrid"}  # objective -> model spec (embedded name, iddpm:imagenet64-hybrid:PATH, diffusers:DIR, module:callable)
noise_schedules: dict = {}  # objective -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data: str = "tiny-imagenet64:train"  # data spec of the selection split: the table and the DP use it
test_data: str = "tiny-imagenet64:test"  # data spec of the held-out split: every reported number uses it
data_dir: "Optional[str]" = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images: int = 8  # training images in the L(t, s) table (the paper: 16,384)
n_eval_images: int = 12  # test images scored per path (the paper: 50,000)
grid: str = "log:100"  # DP search grid (ddpmdp.grids.parse_grid spec); the nodes of the even and quadratic strides of every budget are always added; "all" searches all T + 1
budgets: list = [8, 16, 32, 64, 128, 256]  # step budgets K
full_chain: bool = True  # also score the full T-step chain (T forward passes per test image)
variance: "Optional[str]" = None  # fixed_small, fixed_large or learned_range (None: each model's own rule)
clip: bool = True  # clip x0_hat to [-1, 1] in table, evaluation and sampling
paper_overlay: bool = False  # draw the paper's Table 4 values (only meaningful for the paper's checkpoint and data)
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU)
batch_size: int = 32  # images per forward pass
seed: int = 0  # noise seed (table and evaluation draw from separate noise streams)
num_threads: int = 2  # torch CPU threads
cache_dir: "Optional[str]" = None  # folder that keeps tables for reuse across notebooks (None: no cache)
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/imagenet64_nll beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)

# %% [markdown]
# We'll need the NLL driver (the same as for CIFAR-10), the data loader and the run configuration, which collects the settings above.

# %%
from IPython.display import display

from ddpmdp.book.experiments.nll import nll_figure, nll_report, run_nll_models, write_nll_paths
from ddpmdp.book.reporting.captions import figure_provenance
from ddpmdp.book.reporting.formatting import format_seconds
from ddpmdp.book.reporting.paper import PAPER_TABLE4
from ddpmdp.book.runtime.inputs import describe_data, load_data
from ddpmdp.book.runtime.run_config import RunConfig

run = RunConfig.from_parameters("imagenet64_nll", globals())
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
# Each image has $d = 3 \cdot 64 \cdot 64 = 12{,}288$ dimensions, four times CIFAR-10's, so every forward pass costs about four times as much.
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
# Wall times of the stages on the machine that executed the notebook.
#
# ## Table 4 layout, paired differences and what they say

# %%
display(*nll_report(run, results, train, test, name="imagenet64_nll", title="64×64 test bits/dim",
                    budgets=budgets))

# %% [markdown]
# The table gives test bits/dim ± SE (‡: DP within 2 SE of a stride, †: DP worse by more than 2 SE), the list below it every paired difference, and the last paragraph, generated from them, where the DP path gains.
# A 64×64 image has four times the dimensions of a CIFAR-10 image, so the same budget spreads its steps over a longer per-pixel cost.
#
# Beside it, the paper's Table 4 (the authors' ImageNet 64 model and data, no SE): compare the shape of the rows, not the values.
#
# ```{paper-table} 4
# ```
#
# ## Bits/dim against the budget

# %%
for objective, r in results.items():
    display(run.figure(nll_figure(r, "64×64", PAPER_TABLE4 if paper_overlay else None),
                       f"imagenet64_nll_{objective}", caption=figure_provenance({objective: r.model}, train, test)))

# %% [markdown]
# As on CIFAR-10, the DP curve falls fastest; the even stride wastes its steps at large $t$, where the signal is already gone.
#
# ## The DP paths

# %%
print(write_nll_paths(run, results, "imagenet64_nll", budgets))

# %% [markdown]
# The chosen timesteps crowd near the data end of the chain, as in the paper's Figure 6.
# The JSON files can be passed to the command line as `dp:FILE.json:K`.
