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
# They were trained with the project's own code ({py:mod}`ddpmdp.training`, `ddpmdp train`) with the paper's three objectives.
#
# **What you'll see**
#
# - each model's card: objective, noise schedule, size, training steps and CPU minutes, and its **held-out** full-chain bits/dim ± standard error with the split and the number of images it was measured on;
# - a sample grid from each model.
#
# ```{warning}
# These models are tiny (about 2M parameters) and were trained for about an hour each on a CPU.
# Their bits/dim are **not comparable** to the paper's 3–4 bits/dim: the held-out images are the shared copies (CIFAR-10 decoded from JPEG, which smooths the images and *lowers* bits/dim; Tiny-ImageNet instead of ImageNet 64), and the networks are far from converged, as their samples show.
# They serve to compare schedules with each other, not to reproduce the paper's absolute numbers (see {ref}`public-checkpoints`).
# ```

# %% tags=["parameters"]
models = ["cifar10-simple", "cifar10-hybrid", "cifar10-vlb", "imagenet64-hybrid"]  # embedded model names
sample_path = "quadratic:100"  # path spec of the sampling chain (even:K, quadratic:K, nodes:...; even:1000 is the full chain)
sampler = "ancestral"  # ancestral (the model's own variance rule) or ddim (eta 0)
n_samples = 36  # samples per model
clip = True  # clip x0_hat to [-1, 1] while sampling
device = "cpu"  # cpu or cuda
dtype = "float32"  # network precision: float32 (the book), or float64 (the smoke runs: digits that do not depend on the CPU)
batch_size = 36  # images per forward pass
seed = 0  # noise seed (the same for every model)
num_threads = 2  # torch CPU threads (1 makes CPU runs bit-reproducible)
out_dir = "book/_generated"  # tables and figures for the book (relative to the repository root)

# %% [markdown]
# We'll need the package's experiment drivers, its grid figure and IPython's display helpers.

# %%
import math
import time

import torch
from IPython.display import Image, Markdown, display

from ddpmdp import experiments as ex
from ddpmdp.paths import generated_dir
from ddpmdp.plotting import sample_grid_figure

torch.set_num_threads(num_threads)
out = generated_dir(out_dir)
print("outputs go to", ex.relative(out))

# %% [markdown]
# The card table and the sample grids land in the folder printed above.
#
# ## Model cards

# %%
header, rows = ex.embedded_card_table(models)
ex.write_result_table((header, rows), "embedded_models", out)
display(Markdown(ex.markdown_table(header, rows, title="Embedded models (held-out bits/dim: full T-step chain)")))

# %% [markdown]
# Each held-out number is the mean over that many test images of the full-chain negative ELBO in bits/dim, computed by {py:func}`ddpmdp.evaluate.evaluate_paths` with fresh noise; "Train min" is the wall time of the training loop on one CPU thread.
# With 24 to 64 images the standard errors are a few hundredths of a bit per dimension.

# %%
loaded = {name: ex.load_experiment_model(name, device=device, dtype=dtype) for name in models}
for name, model in loaded.items():
    card = model.card
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
    grids[name] = ex.model_samples(model, sample_path, n_samples, method=sampler, clip=clip, seed=seed, device=device,
                                   batch_size=batch_size)
    ex.save_figure(sample_grid_figure({name: grids[name]}, nrow=math.ceil(math.sqrt(n_samples))),
                   f"embedded_samples_{name}", out)
fig = sample_grid_figure(grids, nrow=math.ceil(math.sqrt(n_samples)),
                         title=f"{sampler} sampling along {sample_path}, seed {seed}")
display(Image(filename=str(ex.save_figure(fig, "embedded_samples", out))))

# %% [markdown]
# Every model started from the same seed.
# The samples are blurry and over-saturated: colour fields and coarse layouts of natural images, now and then an object-like silhouette, no recognisable objects.
# That is what a 2M-parameter DDPM gives after 2,000–3,600 training steps; the schedule comparisons in the next chapters do not need better samples, only a fixed model.

# %% tags=["nbval-ignore-output"]
print(f"sampling took {time.perf_counter() - start:.1f} s")

# %% [markdown]
# Wall time of the sampling on the machine that executed this notebook.
