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
# (nb-mc-ablation)=
# # How many training images does the table need?
#
# ## Overview
#
# The table $L(t, s)$ is a Monte Carlo estimate: each cell averages one noise draw per training image.
# Section 5.2 of Watson et al. (2021) asks how much the DP paths suffer when the table comes from few images, and finds the loss "negligible" on CIFAR-10 with 128 images and a "visible yet slight" one on ImageNet 64.
#
# **What you'll compute**
#
# - tables from the first 1, 2, 4, … training images, all in one pass over the images (noise is keyed by image and timestep, so each table is exactly the one a separate run would give);
# - the DP path of every budget from every table, scored on the same held-out images with the same noise, so the differences between table sizes are paired;
# - the paper's Figure 3 for one 32×32 and one 64×64 model.

# %% tags=["parameters"]
models = {"CIFAR-10 L_simple": "cifar10-simple", "64×64 L_hybrid": "imagenet64-hybrid"}  # label -> model spec
noise_schedules = {}  # label -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
data = {"CIFAR-10 L_simple": ["cifar10:train", "cifar10:test"], "64×64 L_hybrid": ["tiny-imagenet64:train", "tiny-imagenet64:test"]}  # label -> [selection data, held-out data]
data_dir = None  # dataset folder (None: $DDPMDP_DATA)
table_sizes = [1, 2, 4, 8, 16, 32, 64, 128]  # training images per table (the largest is the reference)
n_eval_images = 32  # test images scoring every DP path
grid = "log:120"  # DP search grid (elbo_table.parse_grid spec): 88 nodes: every node up to 22, then log-spaced
budgets = [8, 16, 32, 64]  # step budgets K (at most the grid size minus one)
variance = None  # fixed_small, fixed_large or learned_range (None: the model's own rule)
clip = True  # clip x0_hat to [-1, 1]
device = "cpu"  # cpu or cuda
dtype = "float32"  # network precision: float32 (the book), or float64 (the smoke runs: digits that do not depend on the CPU)
batch_size = 32  # images per forward pass
seed = 0  # noise seed
num_threads = 2  # torch CPU threads (1 makes CPU runs bit-reproducible)
out_dir = "book/_generated"  # tables and figures for the book (relative to the repository root)

# %% [markdown]
# We'll need the drivers, the ablation figure and IPython's display helpers.

# %%
import torch
from IPython.display import Image, Markdown, display

from ddpmdp import experiments as ex
from ddpmdp.paths import generated_dir
from ddpmdp.plotting import plot_mc_ablation

torch.set_num_threads(num_threads)
out = generated_dir(out_dir)
print("outputs go to", ex.relative(out))

# %% [markdown]
# Tables and figures are written to the folder above.
#
# ## Tables from nested subsets, DP, held-out scores

# %%
results = {}
for label, spec in models.items():
    train = ex.load_data(data[label][0], max(table_sizes), data_dir=data_dir)
    test = ex.load_data(data[label][1], n_eval_images, data_dir=data_dir)
    model = ex.load_experiment_model(spec, noise_schedule=noise_schedules.get(label), device=device, dtype=dtype,
                                     data_dir=data_dir)
    print(f"{label}: {ex.describe_model(model, variance)}")
    print(ex.describe_data(train, data_dir))
    print(ex.describe_data(test, data_dir))
    results[label] = ex.run_mc_ablation(model, train, test, label=label, sizes=table_sizes, budgets=budgets, grid=grid,
                                        variance=variance, clip=clip, batch_size=batch_size, seed=seed, device=device)

# %% [markdown]
# For each model, the training images are the first ones of the selection split, and the held-out images score every path.

# %% tags=["nbval-ignore-output"]
for label, r in results.items():
    print(f"{label}: {ex.format_seconds(r.seconds)}")

# %% [markdown]
# The tables cost one pass over the largest subset; the evaluation costs one pass per node in the union of all paths.
#
# ## Test bits/dim of the DP paths

# %%
for label, r in results.items():
    table = r.as_table(title=f"{label}: test bits/dim of the DP path, by table size")
    ex.write_result_table(table, f"mc_ablation_{ex.slug(label)}", out)
    display(Markdown(table.to_markdown()))

# %% [markdown]
# Each row uses the DP paths chosen from a table of that many training images.
# Once the rows stop changing beyond their SE, more table images buy nothing.

# %%
for label, r in results.items():
    fig = plot_mc_ablation(r.scores, title=f"{label}: DP paths from small tables")
    display(Image(filename=str(ex.save_figure(fig, f"mc_ablation_{ex.slug(label)}", out))))

# %% [markdown]
# The right panel shows the difference from the largest table with paired SEs: differences compatible with zero mean the small table chose equally good paths.
#
# ## How the chosen paths change

# %%
for label, r in results.items():
    K = max(budgets)
    print(f"{label}, K = {K}")
    print(ex.format_paths({n: r.paths[n][K] for n in r.sizes}, max_nodes=16, key="n"))

# %% [markdown]
# Each line is the largest budget's DP path chosen from a table of $n$ images; paths from tiny tables wander, and they settle as $n$ grows.
