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
# (nb-optimal-variance)=
# # Beyond the paper: analytic and optimal variances, and the jointly optimal schedule
#
# ## Overview
#
# Watson et al. search over timesteps only; the variances stay fixed or learned.
# For any isotropic variance a table cell is a closed form of one statistic per node, $M(t) = \mathbb{E}\lVert x_0 - \hat x_0(x_t, t)\rVert^2$, so a single table pass gives every scalar rule, including the variance that is KL-optimal for the network's own mean:
# $\sigma^{*2}_{t,s} = \tilde\beta_{t,s} + c^2_{t,s} M(t)/d$, whose cell is $\tfrac d2 \log(1 + c^2_{t,s} M(t)/(d\tilde\beta_{t,s}))$ (see the method chapter).
#
# **What you'll compute**
#
# - one table pass per model on **training** images, and from it the tables of `fixed_small`, `fixed_large`, `learned_range` (learned-variance models), `analytic` (Analytic-DPM), `optimal` and the per-edge `best`;
# - the even, quadratic and DP schedules of every rule, each edge with the $\sigma^2$ its rule fixed on the training table, scored on **held-out** images in one paired evaluation;
# - bits/dim against $K$, and the $\sigma^2$ the optimal rule chooses along a DP path against $\tilde\beta$ and $\beta$.
#
# All logic lives in {py:mod}`ddpmdp.book.experiments.optimal_variance`; this notebook only calls it.
#
# ```{rerun-box} optimal_variance
# ```

# %% tags=["parameters"]
models: dict = {"L_simple": "cifar10-simple", "L_hybrid": "cifar10-hybrid"}  # name -> model spec (embedded name, iddpm:PRESET[:PATH], ho:DIR, gaussian:DATA, module:callable); fixed- and learned-variance models both work
noise_schedules: dict = {}  # name -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data: str = "cifar10-lossless:train"  # data spec of the selection split: tables, DP paths and every σ² come from it (lossless)
test_data: str = "cifar10-lossless:test"  # data spec of the held-out split: every reported number uses it, nothing is re-estimated on it (lossless, 100 images)
data_dir: "Optional[str]" = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images: int = 24  # training images in the table (M(t), Γ_t and the decoder candidates are estimated on them; 24 and the grid below share cifar10_nll's cached tables)
n_eval_images: int = 12  # test images scored per schedule (paired: all schedules see the same images and noise)
grid: str = "log:100"  # DP search grid (ddpmdp.grids.parse_grid spec); the nodes of the even and quadratic strides of every budget are always added, so their σ² come from the table
budgets: list = [8, 16, 32, 64, 128, 256]  # step budgets K
sigma_budget: int = 16  # the K whose DP path's σ² are plotted against fixed_small and fixed_large
full_chain: bool = False  # also score the full T-step chain under the model's default rule (T forward passes per test image)
clip: bool = True  # clip x0_hat to [-1, 1] in table, evaluation and sampling
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU)
batch_size: int = 64  # images per forward pass
seed: int = 0  # noise seed (table and evaluation draw from separate noise streams)
num_threads: int = 2  # torch CPU threads
cache_dir: "Optional[str]" = None  # folder that keeps tables for reuse across notebooks (None: no cache)
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/optimal_variance beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)
# %% [markdown]
# We'll need the optimal-variance driver, the bits/dim figure, the reporting helpers, the inputs, the run configuration and IPython's display helper.

# %%
from IPython.display import display

from ddpmdp.book.experiments.optimal_variance import (anchor_markdown, comparison_caption, comparison_table, curves,
                                                      must_show_lines, plot_sigma_along_path, run_optimal_variance,
                                                      variance_table)
from ddpmdp.book.reporting.captions import figure_provenance, provenance
from ddpmdp.book.reporting.formatting import format_seconds
from ddpmdp.book.reporting.plotting import plot_bpd_vs_budget
from ddpmdp.book.runtime.inputs import describe_data, describe_model, load_data
from ddpmdp.book.runtime.run_config import RunConfig
from ddpmdp.book.runtime.table_cache import grid_with_strides

run = RunConfig.from_parameters("optimal_variance", globals())
print("outputs go to", run.where())

# %% [markdown]
# Tables and figures land in the folder printed above.
#
# ## Data
#
# The selection split feeds the table and fixes every $\sigma^2$; the held-out split is only scored.

# %%
train = load_data(train_data, n_table_images, data_dir=data_dir)
test = load_data(test_data, n_eval_images, data_dir=data_dir)
print(describe_data(train, data_dir))
print(describe_data(test, data_dir))

# %% [markdown]
# The notes say where the images differ from the official files.
#
# ## One table pass, every rule, one paired evaluation
#
# {py:func}`ddpmdp.book.experiments.optimal_variance.run_optimal_variance` builds one table per model (rule `optimal`, or `best` for learned-variance models: the same forward passes also sum $M(t)$, $\Gamma_t$ and the decoder candidates), derives every other rule's table without the network, solves each DP, and scores all schedules on the test images.

# %%
results = {}
for name, spec in models.items():
    model = run.model(spec, noise_schedules.get(name))
    print(f"{name}: {describe_model(model)}")
    results[name] = run_optimal_variance(model, train, test, name=name, budgets=budgets,
                                         grid=grid_with_strides(grid, budgets), full_chain=full_chain,
                                         cache_dir=run.cache, **run.settings())

# %% [markdown]
# Each line names the model, its noise schedule, $T$ and its default variance rule; the rules compared below all come from that one table.

# %% tags=["nbval-ignore-output"]
for name, r in results.items():
    print(f"{name}: {format_seconds(r.seconds, r.tables[r.rules[0]].meta if r.cached else None)}")

# %% [markdown]
# These are wall times on the machine that executed the notebook; deriving the extra rules costs no forward pass, only the evaluation grows with the number of schedules.
#
# ## Held-out bits/dim per rule and stride

# %%
for name, r in results.items():
    table = variance_table(r, budgets=budgets, title=f"{name}: test bits/dim per variance rule")
    display(run.table(table, f"optimal_variance_{name}",
                      caption=provenance({name: r.model}, train, test, r.tables[next(iter(r.tables))])))

# %% [markdown]
# Rows are variance rule × stride; every schedule's $\sigma^2$ were fixed on the training table, and all cells of one model are paired.
# The paired comparisons between rules follow.

# %% [markdown]
# ## Which variance wins, and by how much

# %%
display(run.table(comparison_table(results), "optimal_variance_comparisons",
                  title="Paired differences of held-out bits/dim between DP paths", caption=comparison_caption(results)))

# %% [markdown]
# Each cell is a paired difference of held-out bits/dim (negative: the first rule's schedule is better) with its SE; the last column says where a difference is larger than twice its SE.
# `optimal` minimises every cell over isotropic variances for the network's own mean, so on the training table it cannot lose to `fixed_large` or `analytic`; on held-out data it can only lose by selection noise.
# The table is written to `optimal_variance_comparisons_wide.csv`, which the results chapter shows; the same comparisons as sentences:

# %%
run.text("".join(f"- {line}\n" for r in results.values() for line in must_show_lines(r)), "optimal_variance_summary")

# %% [markdown]
# ## Bits/dim against the budget

# %%
for name, r in results.items():
    fig = plot_bpd_vs_budget(curves(r, ("dp",), extra=[("fixed_large", "even")]),
                             f"{name}: DP per variance rule, test split", full=r.full, ylog=True)
    display(run.figure(fig, f"optimal_variance_{name}_bpd", caption=figure_provenance({name: r.model}, train, test)))

# %% [markdown]
# The curves are the DP schedules of each rule (the even `fixed_large` stride for reference); the gap between `fixed_large` and `optimal` is the value of choosing the variance together with the path.

# %% [markdown]
# ## The σ² along a DP path

# %%
for name, r in results.items():
    fig = plot_sigma_along_path(r, "best" if "best" in r.rules else "optimal", sigma_budget)
    display(run.figure(fig, f"optimal_variance_{name}_sigma", caption=figure_provenance({name: r.model}, train)))

# %% [markdown]
# Each marker is one edge $t \to s$ of the DP path; the optimal $\sigma^2 = \tilde\beta + c^2 M(t)/d$ always lies above $\tilde\beta$ (the `fixed_small` line); where it lies against $\beta$ (the `fixed_large` line) depends on how good the network's $\hat x_0$ is at that $t$.
# On a learned-variance model the `best` schedule uses the learned variance on the edges where it wins; those edges have no single $\sigma^2$ and are left out of the curve.

# %% [markdown]
# ## External anchor: Analytic-DPM Table 1

# %%
display(run.text(anchor_markdown(), "optimal_variance_anchor"))

# %% [markdown]
# Analytic-DPM's numbers are on their own CIFAR-10 models (T = 1000), so they anchor the size of the effect, not individual cells: read the OT rows (their DP), `analytic` against σ² = β (`fixed_large`), and compare that gap with the `analytic − fixed_large` row of the table above.
