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
# Table 4 of Watson et al. (2021) repeats the CIFAR-10 comparison on ImageNet 64×64 with an $L_\text{hybrid}$ model, where 32 DP steps came within 0.1 bits/dim of 4000 steps.
# This notebook runs the same pipeline on a 64×64 model: table on training images, DP for every budget, held-out scores with paired standard errors.
#
# **What you'll compute**
#
# - test bits/dim ± SE of the even, quadratic and DP strides for every budget $K$, and of the full chain;
# - the gap between each stride and the full chain, as a figure.
#
# The default data are the project's Tiny-ImageNet 64×64 stand-in (`tiny-imagenet64:train|test`), not ImageNet 64: its numbers are not comparable to the paper's.

# %% tags=["parameters"]
models = {"L_hybrid": "imagenet64-hybrid"}  # objective -> model spec (embedded name, iddpm:imagenet64-hybrid:PATH, module:callable)
noise_schedules = {}  # objective -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data = "tiny-imagenet64:train"  # data spec of the selection split (table and DP)
test_data = "tiny-imagenet64:test"  # data spec of the held-out split (reported numbers)
data_dir = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images = 24  # training images in the L(t, s) table (the paper: 16,384)
n_eval_images = 24  # test images scored per path (the paper: 50,000)
grid = "log:200+stride:4"  # DP search grid (elbo_table.parse_grid spec); "all" searches all T + 1 nodes
budgets = [8, 16, 32, 64, 128, 256]  # step budgets K
full_chain = True  # also score the full T-step chain (T forward passes per test image)
variance = None  # fixed_small, fixed_large or learned_range (None: the model's own rule)
clip = True  # clip x0_hat to [-1, 1] in table, evaluation and sampling
paper_overlay = False  # draw the paper's Table 4 values (only meaningful for the paper's checkpoint and data)
device = "cpu"  # cpu or cuda
dtype = "float32"  # network precision: float32 (the book), or float64 (the smoke runs: digits that do not depend on the CPU)
batch_size = 32  # images per forward pass
seed = 0  # noise seed (table and evaluation draw from separate noise streams)
num_threads = 2  # torch CPU threads (1 makes CPU runs bit-reproducible)
cache_dir = "runs/cache"  # folder that keeps tables for reuse across notebooks, relative to the repository root (None: no cache)
out_dir = "book/_generated"  # tables and figures for the book (relative to the repository root)

# %% [markdown]
# We'll need the experiment drivers, the figure and report functions, and IPython's display helpers.

# %%
import torch
from IPython.display import Image, Markdown, display

from ddpmdp import experiments as ex
from ddpmdp.paths import generated_dir
from ddpmdp.plotting import plot_bpd_vs_budget
from ddpmdp.reports import PAPER_TABLE4, flags_markdown, scores_by_stride

torch.set_num_threads(num_threads)
out = generated_dir(out_dir)
print("outputs go to", ex.relative(out))

# %% [markdown]
# Tables and figures are written to the folder above.
#
# ## Data

# %%
train = ex.load_data(train_data, n_table_images, data_dir=data_dir)
test = ex.load_data(test_data, n_eval_images, data_dir=data_dir)
print(ex.describe_data(train, data_dir))
print(ex.describe_data(test, data_dir))

# %% [markdown]
# Each image has $d = 3 \cdot 64 \cdot 64 = 12{,}288$ dimensions, four times CIFAR-10's, so every forward pass costs about four times as much.
#
# ## Table, DP and held-out evaluation

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
# The line names the model, its schedule and the variance rule shared by table, evaluation and DP.

# %% tags=["nbval-ignore-output"]
for objective, r in results.items():
    print(f"{objective}: {ex.format_seconds(r.seconds)}{' (table from cache)' if r.cached else ''}")

# %% [markdown]
# Wall times of the three stages on the machine that executed the notebook.
#
# ## Table 4 layout

# %%
table = ex.nll_table(results, budgets=budgets, title="64×64 test bits/dim")
ex.write_result_table(table, "imagenet64_nll", out)
display(Markdown(table.to_markdown()))

# %% [markdown]
# Cells are test bits/dim ± SE; ‡ marks a DP cell within 2 SE of a baseline.

# %%
display(Markdown(flags_markdown(table.flags)))

# %% [markdown]
# Each row compares the DP path with one baseline at one budget, with the paired SE of the difference.

# %%
for line in ex.nll_summary(results):
    print(line)

# %% [markdown]
# The sentence above reads off the smallest and the largest budget; the paper's headline is the gap between 32 DP steps and the full chain.
#
# ## Bits/dim against the budget

# %%
for objective, r in results.items():
    paper = ({s: PAPER_TABLE4[(objective, s)] for s in ("even", "quadratic", "dp") if (objective, s) in PAPER_TABLE4}
             if paper_overlay else None)
    fig = plot_bpd_vs_budget(scores_by_stride(r.keyed_scores(), objective), f"64×64 {objective}, test split",
                             full=r.full, paper=paper)
    display(Image(filename=str(ex.save_figure(fig, f"imagenet64_nll_{objective}", out))))

# %% [markdown]
# As on CIFAR-10, the DP curve falls fastest; the even stride wastes its steps at large $t$, where the signal is already gone.

# %%
for objective, r in results.items():
    ex.write_dp_json(r.table, r.solution, budgets, out / f"imagenet64_nll_{objective}_dp.json")
    print(objective)
    print(ex.format_paths(r.dp_paths(), max_nodes=20))

# %% [markdown]
# The chosen timesteps crowd near the data end of the chain, as in the paper's Figure 6.
