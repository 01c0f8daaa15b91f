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
#
# ```{rerun-box} mc_ablation
# ```

# %% tags=["parameters"]
models: dict = {"CIFAR-10 L_simple": "cifar10-simple", "64×64 L_hybrid": "imagenet64-hybrid"}  # label -> model spec
noise_schedules: dict = {}  # label -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
data: dict = {"CIFAR-10 L_simple": ["cifar10-lossless:train", "cifar10-lossless:test"], "64×64 L_hybrid": ["tiny-imagenet64:train", "tiny-imagenet64:test"]}  # label -> [selection data, held-out data] (CIFAR-10: the lossless images, 4,000 training and 100 test)
data_dir: "Optional[str]" = None  # dataset folder (None: $DDPMDP_DATA)
table_sizes: list = [1, 2, 4, 8, 16, 32, 128]  # training images per table (the largest is the reference; the paper found 128 enough on CIFAR-10)
n_eval_images: int = 32  # test images scoring every DP path
grid: str = "log:120"  # DP search grid (ddpmdp.grids.parse_grid spec): 88 nodes: every node up to 22, then log-spaced
budgets: list = [8, 16, 32, 64]  # step budgets K (at most the grid size minus one)
variance: "Optional[str]" = None  # fixed_small, fixed_large or learned_range (None: the model's own rule)
clip: bool = True  # clip x0_hat to [-1, 1]
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU)
batch_size: int = 32  # images per forward pass
seed: int = 0  # noise seed
num_threads: int = 2  # torch CPU threads
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/mc_ablation beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)
# %% [markdown]
# We'll need the ablation driver, its figure, a few formatting helpers, the data loader, the run configuration and IPython's display helper.

# %%
from IPython.display import display

from ddpmdp.book.experiments.mc_ablation import mc_ablation_summary_markdown, run_mc_ablation
from ddpmdp.book.reporting.formatting import format_paths, format_seconds, slug
from ddpmdp.book.reporting.plotting import plot_mc_ablation
from ddpmdp.book.runtime.inputs import describe_data, describe_model, load_data
from ddpmdp.book.runtime.run_config import RunConfig

run = RunConfig.from_parameters("mc_ablation", globals())
print("outputs go to", run.where())

# %% [markdown]
# Tables and figures are written to the folder above.
#
# ## Tables from nested subsets, DP, held-out scores

# %%
results = {}
for label, spec in models.items():
    train = load_data(data[label][0], max(table_sizes), data_dir=data_dir)
    test = load_data(data[label][1], n_eval_images, data_dir=data_dir)
    model = run.model(spec, noise_schedules.get(label))
    print(f"{label}: {describe_model(model, run.variance)}")
    print(describe_data(train, data_dir))
    print(describe_data(test, data_dir))
    results[label] = run_mc_ablation(model, train, test, label=label, sizes=table_sizes, budgets=budgets, grid=grid,
                                     variance=run.variance, **run.settings())

# %% [markdown]
# For each model, the training images are the first ones of the selection split, and the held-out images score every path.

# %% tags=["nbval-ignore-output"]
for label, r in results.items():
    print(f"{label}: {format_seconds(r.seconds)}")

# %% [markdown]
# The tables cost one pass over the largest subset; the evaluation costs one pass per node in the union of all paths.
#
# ## Test bits/dim of the DP paths

# %%
for label, r in results.items():
    table = r.as_table(title=f"{label}: test bits/dim of the DP path, by table size")
    display(run.table(table, f"mc_ablation_{slug(label)}", caption=r.provenance))

# %% [markdown]
# Each row uses the DP paths chosen from a table of that many training images.
# Once the rows stop changing beyond their SE, more table images buy nothing.

# %%
run.text("\n".join(mc_ablation_summary_markdown(r) for r in results.values()), "mc_ablation_summary")

# %% [markdown]
# The largest paired difference from the paths of the largest table, over all smaller tables and budgets: the price of a small table in this run.
# The reference is a table of finitely many images too, so a small difference says the small tables choose the same paths as the reference table does; how far the reference itself is from converged paths this run cannot say.

# %%
for label, r in results.items():
    fig = plot_mc_ablation(r.scores, title=f"{label}: DP paths from small tables")
    display(run.figure(fig, f"mc_ablation_{slug(label)}", caption=r.provenance))

# %% [markdown]
# The second panel shows the difference from the largest table with paired SEs: differences compatible with zero mean the small table chose equally good paths.
#
# ## How the chosen paths change

# %%
for label, r in results.items():
    K = max(budgets)
    print(f"{label}, K = {K}")
    print(format_paths({n: r.paths[n][K] for n in r.sizes}, max_nodes=16, key="n"))

# %% [markdown]
# Each line is the largest budget's DP path chosen from a table of $n$ images; paths from tiny tables wander, and they settle as $n$ grows.
