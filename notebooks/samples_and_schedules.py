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
#
# ```{rerun-box} samples_and_schedules
# ```

# %% tags=["parameters"]
model_spec: str = "cifar10-simple"  # model spec (embedded name, ho:DIR, iddpm:PRESET:PATH, gaussian:DATA, module:callable)
noise_schedule: "Optional[str]" = None  # noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data: str = "cifar10-lossless:train"  # data spec of the selection split: the table and the real images shown (lossless)
data_dir: "Optional[str]" = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images: int = 24  # training images in the L(t, s) table (the same table as cifar10_nll: it comes from the cache)
grid: str = "log:100"  # DP search grid (ddpmdp.grids.parse_grid spec); the even and quadratic nodes of timestep_budgets are added (as in cifar10_nll, so the cached table is shared)
timestep_budgets: list = [8, 16, 32, 64, 128, 256]  # budgets whose DP timesteps are shown
heatmap_budgets: list = [8, 32]  # budgets whose DP paths are drawn over the table
sample_budgets: list = [16, 64, 256]  # budgets with sample grids
n_samples: int = 9  # samples per grid
full_chain: bool = True  # add a grid from the full T-step chain
variance: "Optional[str]" = None  # fixed_small, fixed_large or learned_range (None: the model's own rule)
clip: bool = True  # clip x0_hat to [-1, 1]
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU)
batch_size: int = 64  # images per forward pass
seed: int = 0  # noise seed; shared by all schedules of one budget
num_threads: int = 2  # torch CPU threads
cache_dir: "Optional[str]" = None  # folder that keeps tables for reuse across notebooks (None: no cache)
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/samples_and_schedules beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)
# %% [markdown]
# We'll need the shared-noise sampler of this experiment, the DP and stride paths, three figure functions, the inputs (data, models, the cached table), the run configuration and IPython's display helper.

# %%
import math
import time

from IPython.display import display

from ddpmdp.book.experiments.paths import by_budget, solve_table, stride_paths
from ddpmdp.book.experiments.samples_and_schedules import shared_noise_grids
from ddpmdp.book.reporting.captions import figure_provenance
from ddpmdp.book.reporting.files import write_dp_json
from ddpmdp.book.reporting.formatting import cached_table_note, format_paths
from ddpmdp.book.reporting.plotting import plot_dp_timesteps, plot_table_heatmap
from ddpmdp.book.reporting.sample_grids import sample_grid_figure
from ddpmdp.book.runtime.inputs import describe_data, describe_model, load_data
from ddpmdp.book.runtime.run_config import RunConfig
from ddpmdp.book.runtime.table_cache import cached_table, grid_with_strides

run = RunConfig.from_parameters("samples_and_schedules", globals())
print("outputs go to", run.where())

# %% [markdown]
# Tables and figures are written to the folder above.
#
# ## The table and its DP

# %%
start = time.perf_counter()
model = run.model(model_spec, noise_schedule)
train = load_data(train_data, n_table_images, data_dir=data_dir)
print(describe_model(model, run.variance))
print(describe_data(train, data_dir))
table, cached = cached_table(model, train, variance=run.variance, grid=grid_with_strides(grid, timestep_budgets),
                             cache_dir=run.cache, **run.settings())
solution = solve_table(table, timestep_budgets + heatmap_budgets + sample_budgets)
T = model.schedule.T
print(f"table: {len(table.nodes)} grid nodes from {table.meta['n_images']} {table.meta['split']} images; "
      f"DP solved up to K = {solution.k_max}")

# %% [markdown]
# One DP run up to the largest budget yields the optimal path of every smaller budget as well.
#
# ## DP timesteps for every budget

# %%
dp_paths = {K: solution.path(K) for K in timestep_budgets}
dp_file = write_dp_json(table, solution, sorted(set(timestep_budgets + heatmap_budgets + sample_budgets)),
                        run.out / "samples_and_schedules_dp.json")
print(format_paths(dp_paths, max_nodes=24))
print("paths written to", dp_file.name)

# %% [markdown]
# Small budgets spend their steps close to the data, where a coarse jump costs the most bits; larger budgets fill in the rest of the chain.
# The JSON file holds every path in the format of `ddpmdp solve --json`.

# %%
fig = plot_dp_timesteps(dp_paths, T, title=f"DP timesteps ({table.meta['variance']}, {table.meta['n_images']} images)")
chosen_on = figure_provenance({"model": model.identity}, train)[:-1] + f"; variance {table.meta['variance']}."
display(run.figure(fig, "samples_and_schedules_timesteps", caption=chosen_on))

# %% [markdown]
# Each row is one budget; the paper's Figure 6 shows the same concentration near $t = 0$.
#
# ## The cost table with DP paths

# %%
fig = plot_table_heatmap(table, [solution.path(K) for K in heatmap_budgets],
                         title=f"L(t, s) in bits/dim with the DP paths for K = {', '.join(map(str, heatmap_budgets))}")
display(run.figure(fig, "samples_and_schedules_heatmap", caption=chosen_on))

# %% [markdown]
# The cost of an edge grows with its length and, for a fixed length, with its closeness to the data; the DP paths avoid the bright cells.
#
# ## Samples with shared noise

# %%
paths = by_budget(stride_paths(T, sample_budgets, solution=solution))
grids = shared_noise_grids(model, paths, n_samples, variance=run.variance, full_chain=full_chain, real=train,
                           **run.settings())
fig = sample_grid_figure(grids, nrow=math.ceil(math.sqrt(n_samples)), title="Samples: same noise within each row")
display(run.figure(fig, "samples_and_schedules_samples", caption=chosen_on))

# %% [markdown]
# Within a row every schedule started from the same $x_T$ and drew the same per-step noise, so differences between columns come from the schedule alone.

# %% tags=["nbval-ignore-output"]
print(f"wall time {time.perf_counter() - start:.1f} s" + (f"; {cached_table_note(table.meta)}" if cached else ""))

# %% [markdown]
# Wall time of this notebook on the machine that executed it.
