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
# (nb-sample-quality)=
# # Sample quality: KID against the budget and against bits/dim
#
# ## Overview
#
# A schedule that maximises the ELBO need not give good samples.
# Table 5 of Watson et al. (2021) shows that for few steps the DP paths have *worse* FID than the even and quadratic strides, and that reweighting the DP cost by the mean squared error, $(t - s)\,\mathbb{E}\lVert x_0 - \hat x_0(x_t, t)\rVert^2$, recovers part of the loss.
#
# **What you'll compute**
#
# - samples along six schedules per budget: even and quadratic strides under ancestral (DDPM) sampling and under DDIM with $\eta = 0$, the DP path of the ELBO table, and the DP path of the MSE-reweighted cost;
# - the kernel inception distance (KID, the unbiased MMD² with a cubic kernel) of each sample set to **held-out** real images, with its standard error, from the features of a small CIFAR-10 classifier shipped with the package (a **proxy-KID**, *not comparable* to published numbers; with the Inception weights given, KID and FID are the standard ones);
# - paired differences between neighbouring budgets of one sampler (every cell starts from the same noise), and which cells cannot be told apart;
# - KID against test bits/dim of the same paths (the paper's Figure 2).
#
# The paper's Table 5 reports FID from 50,000 samples, for which a CPU run has no time; FID from a few dozen samples is biased upwards and carries no error bar, while KID is unbiased at any sample size and comes with a jackknife standard error.
#
# ```{rerun-box} sample_quality
# ```

# %% tags=["parameters"]
model_spec: str = "cifar10-simple"  # model spec (embedded name, ho:DIR, iddpm:PRESET:PATH, gaussian:DATA, module:callable)
noise_schedule: "Optional[str]" = None  # noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data: str = "cifar10-lossless:train"  # data spec of the selection split: the table (the lossless CIFAR-10 training images)
test_data: str = "cifar10-lossless:test"  # data spec of the held-out split: KID's real images and the bits/dim of the sampling paths
data_dir: "Optional[str]" = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images: int = 24  # training images in the L(t, s) table (the same table as cifar10_nll: it comes from the cache)
n_real: int = 100  # held-out real images for KID (cifar10-lossless:test holds 100)
n_samples: int = 48  # samples per (sampler, K): as many as the 4-minute budget of the default run allows
n_eval_images: int = 16  # test images for bits/dim (0: skip)
grid: str = "log:100"  # DP search grid (ddpmdp.grids.parse_grid spec); the even and quadratic nodes of table_budgets are added
table_budgets: list = [8, 16, 32, 64, 128, 256]  # budgets whose stride nodes the grid holds (as in cifar10_nll, so the cached table is shared)
budgets: list = [8, 16, 32, 64]  # step budgets K (each sample costs the sum of K over budgets, per sampler)
full_chain: bool = False  # also sample the full T-step chain
features: str = "auto"  # auto (Inception if its weights are in inception_dir, else proxy), inception or proxy; FID is reported only with Inception
inception_dir: "Optional[str]" = None  # folder holding pt_inception-2015-12-05-6726825d.pth
proxy_cache: str = "runs/fid"  # folder caching the proxy classifier (relative: to the repository root inside a checkout, else to the working directory)
proxy_steps: "Optional[int]" = None  # cap on the proxy classifier's training steps (None: the default 1200, i.e. the shipped proxy)
variance: "Optional[str]" = None  # fixed_small, fixed_large or learned_range (None: the model's own rule)
clip: bool = True  # clip x0_hat to [-1, 1]
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU)
batch_size: int = 64  # images per forward pass
seed: int = 0  # noise seed; every sampler of one budget starts from the same x_T
num_threads: int = 1  # torch CPU threads (one: on a shared 2-core CPU two threads slow every network call down several times)
cache_dir: "Optional[str]" = None  # folder that keeps tables for reuse across notebooks (None: no cache)
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/sample_quality beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)
# %% [markdown]
# We'll need the sample-quality driver, the FID figure, the reporting helpers, the inputs (data, models, the cached table), the run configuration and IPython's display helper.

# %%
from IPython.display import display

from ddpmdp.book.experiments.sample_quality import fid_extractor, run_sample_quality, sample_quality_summary_markdown
from ddpmdp.book.reporting.captions import figure_provenance, provenance
from ddpmdp.book.reporting.formatting import format_seconds, times_ten
from ddpmdp.book.reporting.plotting import plot_fid
from ddpmdp.book.reporting.tables import bpd_table
from ddpmdp.book.runtime.inputs import describe_data, describe_model, load_data
from ddpmdp.book.runtime.run_config import RunConfig
from ddpmdp.book.runtime.table_cache import cached_table, grid_with_strides

run = RunConfig.from_parameters("sample_quality", globals())
print("outputs go to", run.where())

# %% [markdown]
# Tables and figures are written to the folder above.
#
# ## Model, data and the selection table

# %%
model = run.model(model_spec, noise_schedule)
train = load_data(train_data, n_table_images, data_dir=data_dir)
real = load_data(test_data, n_real, data_dir=data_dir)
test = load_data(test_data, n_eval_images, data_dir=data_dir) if n_eval_images else None
print(describe_model(model, run.variance))
print(describe_data(train, data_dir))
print(describe_data(real, data_dir))
table, cached = cached_table(model, train, variance=run.variance, grid=grid_with_strides(grid, table_budgets),
                             cache_dir=run.cache, **run.settings())
print(f"table: {len(table.nodes)} grid nodes, {table.meta['n_images']} {table.meta['split']} images")

# %% [markdown]
# The same table gives both DP paths: the ELBO cells, and the per-node mean squared error $\mathbb{E}\lVert x_0 - \hat x_0\rVert^2$ that the reweighted cost uses.
#
# ## The feature extractor

# %%
extractor = fid_extractor(features, inception_dir=inception_dir, proxy_cache=proxy_cache,
                          proxy_steps=proxy_steps, data_dir=data_dir, device=device, dtype=dtype)
info = extractor.describe()
print(f"features: {info['feature']}")
print(f"comparable to published KID and FID: {info['comparable_to_published']}")
if "proxy_training" in info:
    print(f"proxy classifier test accuracy: {info['proxy_training'].get('test_accuracy', float('nan')):.3f}")

# %% [markdown]
# A proxy-KID only ranks the samplers of *this* model against each other; its values cannot be set beside the paper's Table 5.
# With the default settings the proxy is the classifier shipped in the package (`src/ddpmdp/fid/weights/`, trained once by `scripts/train_proxy.py`), so every machine computes the same features, named by the hash of its weights; a smoke run trains its own for two steps.
#
# ## Sampling along every schedule

# %%
result = run_sample_quality(model, table, real, extractor, budgets=budgets, n_samples=n_samples, test=test,
                            variance=run.variance, full_chain=full_chain, **run.settings())

# %% [markdown]
# Every cell started from the same Gaussian vectors $x_T$ (sample $i$ from noise key $i$), so the differences come from the schedules, not from the noise, and KID differences between cells are paired.

# %% tags=["nbval-ignore-output"]
print(format_seconds(result.seconds, table.meta if cached else None))

# %% [markdown]
# Wall times on the machine that executed the notebook.
#
# ## KID by sampler and budget

# %%
metric = f"{result.label}{times_ten(-result.exponent)}, {result.n_samples} samples against {result.n_real} held-out images"
display(run.table(result.kid_table(), "sample_quality_kid", title=metric,
                  caption=result.caption() + " " + provenance({"model": model.identity}, train, real, table)))

# %% [markdown]
# Lower is better; a cell marked ≈ cannot be told apart from the cell to its left (the same sampler with the previous budget), because their paired difference lies within 2 standard errors.
# KID is unbiased, so it can be slightly negative when samples and real images are indistinguishable to the features.

# %%
if result.fid_table() is not None:
    display(run.table(result.fid_table(), "sample_quality_fid", title="FID (Inception features)",
                      caption=f"FID of the same samples against the {result.n_real} held-out images (biased upwards at "
                              "this sample size; one sample set per cell, no SE)."))

# %% [markdown]
# FID appears only when the Inception weights are given (the `features` parameter); the default run has none, and then this cell prints nothing.
#
# The paper's Table 5 (FID from 50,000 samples with Inception features; not comparable with a proxy-KID): compare which sampler wins at which budget.
#
# ```{paper-table} 5
# ```

# %%
run.text(sample_quality_summary_markdown(result), "sample_quality_summary")

# %% [markdown]
# These statements are read off this run's table with the book's one rule: a paired difference counts only beyond 2 standard errors.

# %%
full = None if result.full is None else (result.full.value / 10 ** result.exponent, result.full.se / 10 ** result.exponent)
fig = plot_fid(result.kid_curves(), result.bpd or None, full=full, metric_label=f"KID{times_ten(-result.exponent)}",
               title="KID against the budget")
display(run.figure(fig, "sample_quality_kid",
                   caption=f"{metric} (±1 SE); " + figure_provenance({"model": model.identity}, train, test)))

# %% [markdown]
# In the second panel, each point is one (sampler, $K$): a lower bits/dim does not imply a lower KID, which is the paper's point about ELBO-optimal schedules.
#
# ## Bits/dim of the sampling paths

# %%
if result.bpd:
    bt = bpd_table({(model_spec, s, K): sc for s, d in result.bpd.items() for K, sc in d.items()},
                   budgets=budgets, dp="dp (ELBO)", title="Test bits/dim of the ancestral sampling paths",
                   row_headers=("Model", "Path"))
    display(run.table(bt, "sample_quality_bpd"))

# %% [markdown]
# The DP path is optimal on the training table, so it should also have the lowest held-out bits/dim; the MSE-reweighted path gives up likelihood, and the summary above says whether it bought sample quality in this run.
