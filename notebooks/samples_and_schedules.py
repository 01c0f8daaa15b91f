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
# (nb-samples-and-schedules)=
# # Samples and schedules
#
# ## Overview
#
# This notebook looks at what the DP chooses and what it produces.
#
# **What you'll compute**
#
# - the DP timesteps for every budget (the paper's Figure 6);
# - the cost table $L(t, s)$ in bits/dim with DP paths drawn over it;
# - sample grids along the even, quadratic and DP schedules, with the **same noise** for every schedule of one budget (the paper's Figures 4 and 5), next to the full chain and real images.

# %% tags=["parameters"]
model_spec = "cifar10-simple"  # model spec (embedded name, ho:DIR, iddpm:PRESET:PATH, gaussian:DATA, module:callable)
noise_schedule = None  # noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data = "cifar10:train"  # data spec of the selection split: the table and the real images shown
data_dir = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images = 64  # training images in the L(t, s) table (the same table as cifar10_nll: it comes from the cache)
grid = "log:200+stride:4"  # DP search grid (elbo_table.parse_grid spec)
timestep_budgets = [8, 16, 32, 64, 128, 256]  # budgets whose DP timesteps are shown
heatmap_budgets = [8, 32]  # budgets whose DP paths are drawn over the table
sample_budgets = [16, 64, 256]  # budgets with sample grids
n_samples = 16  # samples per grid
full_chain = True  # add a grid from the full T-step chain
variance = None  # fixed_small, fixed_large or learned_range (None: the model's own rule)
clip = True  # clip x0_hat to [-1, 1]
device = "cpu"  # cpu or cuda
dtype = "float32"  # network precision: float32 (the book), or float64 (the smoke runs: digits that do not depend on the CPU)
batch_size = 64  # images per forward pass
seed = 0  # noise seed; shared by all schedules of one budget
num_threads = 2  # torch CPU threads (1 makes CPU runs bit-reproducible)
cache_dir = "runs/cache"  # folder that keeps tables for reuse across notebooks, relative to the repository root (None: no cache)
out_dir = "book/_generated"  # tables and figures for the book (relative to the repository root)

# %% [markdown]
# We'll need the drivers, three figure functions and IPython's display helpers.

# %%
import math
import time

import torch
from IPython.display import Image, display

from ddpmdp import experiments as ex
from ddpmdp.paths import generated_dir
from ddpmdp.plotting import plot_dp_timesteps, plot_table_heatmap, sample_grid_figure

torch.set_num_threads(num_threads)
out = generated_dir(out_dir)
print("outputs go to", ex.relative(out))

# %% [markdown]
# Tables and figures are written to the folder above.
#
# ## The table and its DP

# %%
start = time.perf_counter()
model = ex.load_experiment_model(model_spec, noise_schedule=noise_schedule, device=device, dtype=dtype, data_dir=data_dir)
train = ex.load_data(train_data, n_table_images, data_dir=data_dir)
print(ex.describe_model(model, variance))
print(ex.describe_data(train, data_dir))
table, cached = ex.cached_table(model, train, variance=ex.default_variance(model, variance), grid=grid, clip=clip,
                                seed=seed, batch_size=batch_size, device=device, cache_dir=cache_dir)
solution = ex.solve_table(table, timestep_budgets + heatmap_budgets + sample_budgets)
T = model.schedule.T
print(f"table: {len(table.nodes)} grid nodes from {table.meta['n_images']} {table.meta['split']} images; "
      f"DP solved up to K = {solution.k_max}")

# %% [markdown]
# One DP run up to the largest budget yields the optimal path of every smaller budget as well.
#
# ## DP timesteps for every budget

# %%
dp_paths = {K: solution.path(K) for K in timestep_budgets}
dp_file = ex.write_dp_json(table, solution, sorted(set(timestep_budgets + heatmap_budgets + sample_budgets)),
                           out / "samples_and_schedules_dp.json")
print(ex.format_paths(dp_paths, max_nodes=24))
print("paths written to", ex.relative(dp_file))

# %% [markdown]
# Small budgets spend their steps close to the data, where a coarse jump costs the most bits; larger budgets fill in the rest of the chain.
# The JSON file holds every path in the format of `ddpmdp solve --json`.

# %%
fig = plot_dp_timesteps(dp_paths, T, title=f"DP timesteps ({table.meta['variance']}, {table.meta['n_images']} images)")
display(Image(filename=str(ex.save_figure(fig, "samples_and_schedules_timesteps", out))))

# %% [markdown]
# Each row is one budget; the paper's Figure 6 shows the same concentration near $t = 0$.
#
# ## The cost table with DP paths

# %%
fig = plot_table_heatmap(table, [solution.path(K) for K in heatmap_budgets],
                         title=f"L(t, s) in bits/dim with the DP paths for K = {', '.join(map(str, heatmap_budgets))}")
display(Image(filename=str(ex.save_figure(fig, "samples_and_schedules_heatmap", out))))

# %% [markdown]
# The cost of an edge grows with its length and, for a fixed length, with its closeness to the data; the DP paths avoid the bright cells.
#
# ## Samples with shared noise

# %%
paths = ex.by_budget(ex.stride_paths(T, sample_budgets, solution=solution))
grids = ex.shared_noise_grids(model, paths, n_samples, variance=variance, clip=clip, seed=seed, device=device,
                              batch_size=batch_size, full_chain=full_chain, real=train)
fig = sample_grid_figure(grids, nrow=math.ceil(math.sqrt(n_samples)), title="Samples: same noise within each row")
display(Image(filename=str(ex.save_figure(fig, "samples_and_schedules_samples", out))))

# %% [markdown]
# Within a row every schedule started from the same $x_T$ and drew the same per-step noise, so differences between columns come from the schedule alone.

# %% tags=["nbval-ignore-output"]
print(f"wall time {time.perf_counter() - start:.1f} s" + (" (table from cache)" if cached else ""))

# %% [markdown]
# Wall time of this notebook on the machine that executed it.
