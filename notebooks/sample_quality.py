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
# # Sample quality: FID against the budget and against bits/dim
#
# ## Overview
#
# A schedule that maximises the ELBO need not give good samples.
# Table 5 of Watson et al. (2021) shows that for few steps the DP paths have *worse* FID than the even and quadratic strides, and that reweighting the DP cost by the mean squared error, $(t - s)\,\mathbb{E}\lVert x_0 - \hat x_0(x_t, t)\rVert^2$, recovers part of the loss.
#
# **What you'll compute**
#
# - samples along six schedules per budget: even and quadratic strides under ancestral (DDPM) sampling and under DDIM with $\eta = 0$, the DP path of the ELBO table, and the DP path of the MSE-reweighted cost;
# - the Fréchet distance of each sample set to training images (FID with the Inception weights when they are available, otherwise a **proxy-FID** from a small CIFAR-10 classifier, which is *not comparable* to published FIDs);
# - FID against test bits/dim of the same paths (the paper's Figure 2).

# %% tags=["parameters"]
model_spec = "cifar10-simple"  # model spec (embedded name, ho:DIR, iddpm:PRESET:PATH, gaussian:DATA, module:callable)
noise_schedule = None  # noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
train_data = "cifar10:train"  # data spec of the selection split: the table and the FID reference images
test_data = "cifar10:test"  # data spec of the held-out split (bits/dim of the sampling paths)
data_dir = None  # dataset folder (None: $DDPMDP_DATA)
n_table_images = 64  # training images in the L(t, s) table (the same table as cifar10_nll: it comes from the cache)
n_reference = 2000  # training images for the FID reference statistics
n_samples = 100  # samples per (sampler, K)
n_eval_images = 48  # test images for bits/dim (0: skip)
grid = "log:200+stride:4"  # DP search grid (elbo_table.parse_grid spec)
budgets = [8, 16, 32, 64]  # step budgets K (each sample costs the sum of K over budgets, per sampler)
full_chain = False  # also sample the full T-step chain
fid_features = "auto"  # auto (Inception if its weights are in inception_dir, else proxy), inception or proxy
inception_dir = None  # folder holding pt_inception-2015-12-05-6726825d.pth
proxy_cache = "runs/fid"  # folder caching the proxy classifier, relative to the repository root
proxy_steps = None  # cap on the proxy classifier's training steps (None: the default 1200)
variance = None  # fixed_small, fixed_large or learned_range (None: the model's own rule)
clip = True  # clip x0_hat to [-1, 1]
device = "cpu"  # cpu or cuda
dtype = "float32"  # network and FID-proxy training precision: float32 (the book), or float64 (the smoke runs: digits that do not depend on the CPU)
batch_size = 64  # images per forward pass
seed = 0  # noise seed; every sampler of one budget starts from the same x_T
num_threads = 2  # torch CPU threads (1 makes CPU runs bit-reproducible)
cache_dir = "runs/cache"  # folder that keeps tables for reuse across notebooks, relative to the repository root (None: no cache)
out_dir = "book/_generated"  # tables and figures for the book (relative to the repository root)

# %% [markdown]
# We'll need the drivers, the FID figure and IPython's display helpers.

# %%
import torch
from IPython.display import Image, Markdown, display

from ddpmdp import experiments as ex
from ddpmdp.paths import generated_dir
from ddpmdp.plotting import plot_fid
from ddpmdp.reports import bpd_table

torch.set_num_threads(num_threads)
out = generated_dir(out_dir)
print("outputs go to", ex.relative(out))

# %% [markdown]
# Tables and figures are written to the folder above.
#
# ## Model, data and the selection table

# %%
model = ex.load_experiment_model(model_spec, noise_schedule=noise_schedule, device=device, dtype=dtype, data_dir=data_dir)
train = ex.load_data(train_data, n_table_images, data_dir=data_dir)
reference = ex.load_data(train_data, n_reference, data_dir=data_dir)
test = ex.load_data(test_data, n_eval_images, data_dir=data_dir) if n_eval_images else None
print(ex.describe_model(model, variance))
print(ex.describe_data(reference, data_dir))
table, cached = ex.cached_table(model, train, variance=ex.default_variance(model, variance), grid=grid, clip=clip,
                                seed=seed, batch_size=batch_size, device=device, cache_dir=cache_dir)
print(f"table: {len(table.nodes)} grid nodes, {table.meta['n_images']} {table.meta['split']} images")

# %% [markdown]
# The same table gives both DP paths: the ELBO cells, and the per-node mean squared error $\mathbb{E}\lVert x_0 - \hat x_0\rVert^2$ that the reweighted cost uses.
#
# ## The feature extractor

# %%
extractor = ex.fid_extractor(fid_features, inception_dir=inception_dir, proxy_cache=proxy_cache,
                             proxy_steps=proxy_steps, data_dir=data_dir, device=device, dtype=dtype)
info = extractor.describe()
print(f"metric: {info['label']}")
print(f"comparable to published FIDs: {info['comparable_to_published']}")
if "proxy_training" in info:
    print(f"proxy classifier test accuracy: {info['proxy_training'].get('test_accuracy', float('nan')):.3f}")

# %% [markdown]
# A proxy-FID only ranks the samplers of *this* model against each other; its values cannot be set beside the paper's Table 5.
#
# ## Sampling along every schedule

# %%
result = ex.run_sample_quality(model, table, reference, extractor, budgets=budgets, n_samples=n_samples, test=test,
                               variance=variance, clip=clip, full_chain=full_chain, seed=seed,
                               batch_size=batch_size, device=device)

# %% [markdown]
# Every sampler of one budget started from the same Gaussian vectors $x_T$, so the differences come from the schedules, not from the noise.

# %% tags=["nbval-ignore-output"]
print(ex.format_seconds(result.seconds) + (" (table from cache)" if cached else ""))

# %% [markdown]
# Wall times on the machine that executed the notebook.
#
# ## FID by sampler and budget

# %%
header, rows = result.fid_table()
ex.write_result_table((header, rows), "sample_quality_fid", out)
display(Markdown(ex.markdown_table(header, rows, title=f"{info['label']}, {result.n_samples} samples against "
                                                      f"{result.n_reference} training images")))

# %% [markdown]
# Lower is better.
# With few samples the distance is biased upwards, so compare rows of this table with each other, not with other tables.

# %%
fig = plot_fid(result.fid, result.bpd or None, full=result.full, title="FID against the budget")
display(Image(filename=str(ex.save_figure(fig, "sample_quality_fid", out))))

# %% [markdown]
# On the right, each point is one (sampler, $K$): a lower bits/dim does not imply a lower FID, which is the paper's point about ELBO-optimal schedules.
#
# ## Bits/dim of the sampling paths

# %%
if result.bpd:
    bt = bpd_table({("paths", s, K): sc for s, d in result.bpd.items() for K, sc in d.items()}, budgets=budgets,
                   dp="dp (ELBO)", title="Test bits/dim of the ancestral sampling paths")
    ex.write_result_table(bt, "sample_quality_bpd", out)
    display(Markdown(bt.to_markdown()))

# %% [markdown]
# The DP path is optimal on the training table, so it should also have the lowest held-out bits/dim; the MSE-reweighted path gives up some likelihood in exchange for sample quality.
