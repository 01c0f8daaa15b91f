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
# (nb-embedded-models)=
# # The embedded models
#
# ## Overview
#
# The book's default run uses four small DDPMs that ship inside the package, so that every notebook runs on a 2-core CPU without downloading weights.
# They were trained with the project's own code ({py:mod}`ddpmdp.training.loop`, `ddpmdp train`) with the paper's three objectives.
#
# **What you'll see**
#
# - each model's card: objective, noise schedule, size, training steps and CPU minutes, and its **held-out** full-chain bits/dim ± standard error with the split and the number of images it was measured on;
# - each model's training stages: first the JPEG-decoded CIFAR-10 copy, then the 4,000 lossless training images;
# - the gap between the lossless test images and their JPEG copies, before and after that fine-tuning, and which nodes of the chain carry it;
# - a sample grid from each model.
#
# ```{warning}
# These models are tiny (about 2M parameters) and were trained for about an hour each on a CPU.
# Their bits/dim are **not comparable** to the paper's: the networks are far from converged, as their samples show, and the data are not the paper's (CIFAR-10: the book's notebooks use the first 4,000 training and 100 test images with their exact pixels; the larger shared copy is decoded from JPEG, which smooths the images and *lowers* bits/dim, as measured below; 64×64: Tiny-ImageNet instead of ImageNet 64).
# They serve to compare schedules with each other, not to reproduce the paper's absolute numbers (see {ref}`public-checkpoints`).
# ```
#
# ```{rerun-box} embedded_models
# ```

# %% tags=["parameters"]
models: list = ["cifar10-simple", "cifar10-hybrid", "cifar10-vlb", "imagenet64-hybrid"]  # embedded model names
sample_path: str = "quadratic:100"  # path spec of the sampling chain (even:K, quadratic:K, nodes:...; even:1000 is the full chain)
sampler: str = "ancestral"  # ancestral (the model's own variance rule) or ddim (eta 0)
n_samples: int = 36  # samples per model
clip: bool = True  # clip x0_hat to [-1, 1] while sampling
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU)
batch_size: int = 36  # images per forward pass
seed: int = 0  # noise seed (the same for every model)
num_threads: int = 2  # torch CPU threads
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/embedded_models beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)
# %% [markdown]
# We'll need the embedded-models driver, the grid figure, the run configuration and IPython's display helper.

# %%
import math
import time

from IPython.display import display

from ddpmdp.book.experiments.embedded_models import (EMBEDDED_CAPTION, embedded_card_table, gap_lines, gap_table,
                                                     load_gap, lossless_gap_lines, model_samples, plot_lossless_gap,
                                                     training_lines)
from ddpmdp.book.reporting.sample_grids import sample_grid_figure
from ddpmdp.book.runtime.run_config import RunConfig

run = RunConfig.from_parameters("embedded_models", globals())
print("outputs go to", run.where())

# %% [markdown]
# The card table and the sample grids land in the folder printed above.
#
# ## Model cards

# %%
display(run.table(embedded_card_table(models), "embedded_models",
                  title="Embedded models (held-out bits/dim: full T-step chain)", caption=EMBEDDED_CAPTION))

# %% [markdown]
# Each held-out number is the mean over that many test images of the full-chain negative ELBO in bits/dim, computed by {py:func}`ddpmdp.evaluate.evaluate_paths` with fresh noise; the minutes in "Training" are the wall time of the training loop on one CPU thread.
# With 24 to 64 images the standard errors are a few hundredths of a bit per dimension.
#
# The training stages of each model, from its card:

# %%
display(run.text("".join(f"- {line}\n" for line in training_lines(models)), "embedded_models_training"))

# %% [markdown]
# A stage on `cifar10:train` used the JPEG-decoded copy of the training images; a stage on `cifar10-lossless:train` the first 4,000 training images with their exact pixels.
#
# ## What the JPEG copy does to bits/dim
#
# The shared CIFAR-10 copy is decoded from JPEG. Each CIFAR-10 card also scores the full chain on the first 100 official test images with their exact pixels and on the JPEG copies of the same 100 images, with the same noise:

# %%
display(run.text("".join(f"- {line}\n" for line in lossless_gap_lines(models)), "embedded_models_gap"))

# %% [markdown]
# The JPEG copy is smoother than the real images, so the models find it more likely, and a bits/dim measured on it reads lower than the same model scores on the exact pixels.
# This is the one place in the book that measures on the JPEG copy: every other CIFAR-10 number is measured on the lossless images.
#
# ## The gap before and after fine-tuning on lossless images
#
# The models were first trained on the JPEG copy and then fine-tuned on the 4,000 lossless training images. `scripts/lossless_check.py` scores the full chain on the 100 lossless test images and on their JPEG copies with the weights of both stages, and keeps every node's term:

# %%
gap = load_gap()
display(run.text("".join(f"- {line}\n" for line in gap_lines(gap)), "embedded_models_gap_stages"))
if gap is not None:
    display(run.table(gap_table(gap), "embedded_models_gap_table", title="Full chain on lossless and JPEG test images",
                      caption=f"Full-chain bits/dim, mean ± SE over the same test images and noise, from {gap.path}."))

# %% [markdown]
# The gap is paired: the same images, once with their exact pixels and once JPEG-decoded, under the same noise, so its SE is that of the per-image differences.
# Where the file does not exist yet, the line above says so and no table follows.

# %%
if gap is not None:
    display(run.figure(plot_lossless_gap(gap), "embedded_models_gap_nodes",
                       caption=f"Cumulative gap of the per-edge terms, from {gap.path}; solid: after fine-tuning, "
                               "dashed: before."))

# %% [markdown]
# Each curve adds up the lossless − JPEG difference of the chain's terms from the data ($t = 1$) upwards, so its value at $T$ is the whole gap (without the prior term) and a steep stretch marks the nodes that carry it: the fine detail that JPEG removes shows up where the noise is still small.

# %%
loaded = {name: run.model(name) for name in models}
for name, model in loaded.items():
    card = model.info["card"]
    print(f"{name}: {card['description']}")
    print(f"  trained on {card['data']} ({card['n_train_images']:,} images), {card['steps']:,} steps of batch "
          f"{card['batch_size']}, EMA {card['ema_rate']}")
    print(f"  note: {card['note']}")

# %% [markdown]
# The note is the card's own statement, written when it was trained; the same caveat holds for every number in this book that uses these models.
#
# ## Samples

# %%
start = time.perf_counter()
grids = {}
for name, model in loaded.items():
    grids[name] = model_samples(model, sample_path, n_samples, method=sampler, **run.settings())
    run.figure(sample_grid_figure({name: grids[name]}, nrow=math.ceil(math.sqrt(n_samples))),
               f"embedded_samples_{name}")
fig = sample_grid_figure(grids, nrow=math.ceil(math.sqrt(n_samples)), max_cols=2,
                         title=f"{sampler} sampling along {sample_path}, seed {seed}")
display(run.figure(fig, "embedded_samples", caption=f"{sampler} sampling along `{sample_path}`, seed {seed}, "
                   f"{n_samples} samples per model; models: "
                   + ", ".join(f"`{model.identity}`" for model in loaded.values()) + "."))

# %% [markdown]
# Every model started from the same seed.
# The samples are blurry and over-saturated: colour fields and coarse layouts of natural images, now and then an object-like silhouette, no recognisable objects.
# That is what a 2M-parameter DDPM gives after 2,000–3,600 training steps; the schedule comparisons in the next chapters do not need better samples, only a fixed model.

# %% tags=["nbval-ignore-output"]
print(f"sampling took {time.perf_counter() - start:.1f} s")

# %% [markdown]
# Wall time of the sampling on the machine that executed this notebook.
