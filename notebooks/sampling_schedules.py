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
# (nb-sampling-schedules)=
# # Beyond the paper: schedules chosen for sample fidelity
#
# ## Overview
#
# The paper's Table 5 shows that paths chosen for the ELBO give *worse* samples at few steps.
# The method chapter's {ref}`method-trajectory` replaces the ELBO table by a **trajectory table**: for a deterministic sampler (DDIM, $\eta = 0$), $C(t, s)$ is the root-mean-square distance per dimension between one student step $t \to s$, started on a fine teacher trajectory, and the teacher's own state at $s$.
# One network evaluation at $t$ gives the cost of every edge $t \to s$, so the table costs one teacher run per seed, and the same dynamic programme gives the fidelity-optimal path for every budget.
#
# **What you'll compute**
#
# - per model, the trajectory table on **selection** seeds and its DP path for every budget $K$;
# - on **fresh** seeds, never those of the table, the teacher distance of every baseline at equal $K$ (even, quadratic, DDIM's quadratic, uniform log-SNR, EDM $\rho = 7$, the ELBO DP path and the MSE-reweighted DP path) and of the trajectory DP path, with paired differences and the book's 2-SE verdict;
# - KID with its standard error against held-out real images for the same paths and samples;
# - the chosen timesteps over the trajectory table, and sample grids in which every path starts from the same $x_T$;
# - the same comparison on the closed-form Gaussian-data model, whose $\varepsilon$ is exact.
#
# All logic lives in {py:mod}`ddpmdp.book.experiments.sampling_schedules` and its report module; this notebook only calls them.
#
# ```{rerun-box} sampling_schedules
# ```

# %% tags=["parameters"]
models: dict = {"CIFAR-10 L_simple": "cifar10-simple", "64×64 L_hybrid": "imagenet64-hybrid"}  # label -> model spec (embedded name, iddpm:PRESET:PATH, ho:DIR, diffusers:DIR, module:callable)
noise_schedules: dict = {}  # label -> noise schedule (linear:T, cosine:T or FILE.npy) for specs that need one
data: dict = {"CIFAR-10 L_simple": ["cifar10-lossless:train", "cifar10-lossless:test"], "64×64 L_hybrid": ["tiny-imagenet64:train", "tiny-imagenet64:test"]}  # label -> [training images of the ELBO table, held-out real images for KID]
elbo_images: dict = {"CIFAR-10 L_simple": 24, "64×64 L_hybrid": 8}  # label -> training images of the ELBO table (with the grid below these are the cached tables of cifar10_nll and imagenet64_nll, so they cost nothing in the book's run)
elbo_grid: str = "log:100"  # grid of the ELBO tables (as in the NLL notebooks); the even and quadratic nodes of elbo_grid_budgets are added
elbo_grid_budgets: list = [8, 16, 32, 64, 128, 256]  # budgets whose stride nodes the ELBO grid holds (the NLL notebooks' budgets: same table, same cache entry)
budgets: dict = {"CIFAR-10 L_simple": [4, 5, 6, 8, 10, 16, 32], "64×64 L_hybrid": [4, 8, 16]}  # label -> budgets K (NFE); 64×64 only the must-show budgets, because its network calls cost about 4 times a CIFAR-10 call here
teacher_grids: dict = {"CIFAR-10 L_simple": "stride:10", "64×64 L_hybrid": "stride:20"}  # label -> base teacher grid; every node of the DP grid is added, so the teacher steps at least as finely as any compared path (a coarser teacher than every node keeps the run within 6 minutes on 2 CPU cores)
grid: str = "log:60"  # base DP grid (ddpmdp.grids.parse_grid spec); every node of every compared path is added, so on its own table the DP is never worse than a baseline
n_selection_seeds: dict = {"CIFAR-10 L_simple": 16, "64×64 L_hybrid": 8}  # label -> seeds of the trajectory table (selection)
n_fresh_seeds: dict = {"CIFAR-10 L_simple": 32, "64×64 L_hybrid": 12}  # label -> fresh seeds: the teacher distance, and the same samples give KID and the sample grids
kid: dict = {"CIFAR-10 L_simple": "proxy", "64×64 L_hybrid": "none"}  # label -> KID of the samples: proxy (images as they are), pooled (2×2-average-pooled to 32×32 first) or none
n_real: int = 100  # held-out real images for KID (cifar10-lossless:test holds 100)
features: str = "proxy"  # KID features: proxy (the shipped CIFAR-10 classifier) or inception (pytorch-fid weights in inception_dir)
inception_dir: "Optional[str]" = None  # folder holding pt_inception-2015-12-05-6726825d.pth
proxy_cache: str = "runs/fid"  # folder caching the proxy classifier (the shipped one is used when it holds none)
proxy_steps: "Optional[int]" = None  # cap on the proxy's training steps when it is trained here (None: the shipped proxy)
must_show: list = [4, 8, 16]  # budgets at which the notebook states whether the trajectory DP path beats every baseline
sample_budgets: list = [4, 8, 16]  # budgets shown in the sample grids
n_grid_samples: int = 4  # samples per grid panel (the first fresh seeds)
gaussian_model: str = "gaussian:cifar10-lossless:train"  # closed-form Gaussian-data model (exact eps)
gaussian_noise_schedule: str = "linear:1000"  # its noise schedule
gaussian_data: str = "cifar10-lossless:train"  # training images of its ELBO table
gaussian_elbo_images: int = 24  # how many of them
gaussian_budgets: list = [4, 8, 16]  # its budgets K
gaussian_teacher_grid: str = "stride:10"  # its base teacher grid
gaussian_seeds: list = [16, 32]  # its selection and fresh seeds
clip: bool = True  # clip x0_hat to [-1, 1] in every DDIM step (teacher, table and students)
device: str = "cpu"  # cpu or cuda
dtype: str = "float32"  # network arithmetic: float32, or float64 (digits that hold on any CPU); the DDIM states are float64 either way
batch_size: int = 16  # seeds per forward pass
seed: int = 0  # seed of both noise streams (selection: stream trajectory; fresh: stream teacher)
num_threads: int = 1  # torch CPU threads (one: on a shared 2-core CPU two threads slow every network call down several times)
data_dir: "Optional[str]" = None  # dataset folder (None: $DDPMDP_DATA)
cache_dir: "Optional[str]" = None  # folder that keeps tables for reuse across notebooks (None: no cache)
out_dir: "Optional[str]" = None  # where tables and figures go (None: ddpmdp-outputs/sampling_schedules beside the notebook)
write_book: bool = False  # allow out_dir inside the repository's book/ folder (ddpmdp reproduce sets it)

# %% [markdown]
# We'll need the driver and its report module, the figure functions, the inputs (data, models, the cached ELBO tables), the run configuration and IPython's display helper.

# %%
import time

from IPython.display import display

from ddpmdp.book.experiments.sample_quality import fid_extractor
from ddpmdp.book.experiments.sampling_schedules import TRAJECTORY, run_sampling_schedules
from ddpmdp.book.experiments.sampling_schedules_report import (curves, difference_table, distance_caption, grid_images,
                                                               kid_caption, metric_table, must_show_lines,
                                                               selection_line, summary_lines)
from ddpmdp.book.reporting.files import write_dp_json
from ddpmdp.book.reporting.formatting import format_paths, format_seconds, slug
from ddpmdp.book.reporting.plotting import plot_bpd_vs_budget, plot_dp_timesteps, plot_table_heatmap
from ddpmdp.book.reporting.sample_grids import sample_grid_figure
from ddpmdp.book.runtime.inputs import describe_data, describe_model, load_data, load_experiment_model
from ddpmdp.book.runtime.run_config import RunConfig
from ddpmdp.book.runtime.table_cache import cached_table, grid_with_strides

run = RunConfig.from_parameters("sampling_schedules", globals())
print("outputs go to", run.where())

# %% [markdown]
# Tables, figures and generated sentences land in the folder printed above; the results chapter includes them.
#
# ## The feature extractor for KID

# %%
extractor = fid_extractor(features, inception_dir=inception_dir, proxy_cache=proxy_cache, proxy_steps=proxy_steps,
                          data_dir=data_dir, device=device, dtype=dtype)
print(f"features: {extractor.feature}")
print(f"comparable to published KID: {extractor.comparable_to_published}")

# %% [markdown]
# The default proxy is a small CIFAR-10 classifier shipped with the package, named by its weights hash; its KIDs rank paths of one model against each other and are not comparable to published numbers.
# It takes 32×32 images, so the 64×64 model is scored by the teacher distance only: 2×2-pooled samples seen through a CIFAR-10 classifier would say little about 64×64 images, and the dozen 64×64 samples per path that this CPU run affords would give very wide standard errors (set `kid` to `pooled` to compute them anyway, as the paper parameter set does).
#
# ## Trajectory table, DP and fresh-seed evaluation for each model
#
# For each model the ELBO table of its NLL notebook (from the cache) gives the ELBO and MSE-reweighted DP paths; {py:func}`ddpmdp.book.experiments.sampling_schedules.run_sampling_schedules` then builds the trajectory table on the selection seeds, solves its DP, and walks the teacher and all paths from the same fresh $x_T$.

# %%
results = {}
for label, spec in models.items():
    model = run.model(spec, noise_schedules.get(label))
    train = load_data(data[label][0], elbo_images[label], data_dir=data_dir)
    real = load_data(data[label][1], n_real, data_dir=data_dir) if kid[label] != "none" else None
    elbo, cached = cached_table(model, train, grid=grid_with_strides(elbo_grid, elbo_grid_budgets), cache_dir=run.cache,
                                **run.settings())
    print(f"{label}: {describe_model(model)}; ELBO table of {elbo.meta['n_images']} {elbo.meta['split']} images")
    results[label] = run_sampling_schedules(model, elbo, label=label, budgets=budgets[label],
                                            teacher_grid=teacher_grids[label], grid=grid,
                                            n_selection=n_selection_seeds[label], n_fresh=n_fresh_seeds[label],
                                            real=real, extractor=extractor, kid_mode=kid[label], **run.settings())
    print(selection_line(results[label]))

# %% [markdown]
# Each model's paragraph names its noise schedule and the variance rule of its ELBO table; the trajectory table holds every node of every compared path, so on the selection seeds the trajectory DP path is never worse than any of them (the driver checks this).
# Whether it stays better on fresh seeds is what follows.

# %% tags=["nbval-ignore-output"]
for label, r in results.items():
    print(f"{label}: {format_seconds(r.seconds)}")

# %% [markdown]
# Wall times on the machine that executed the notebook; the fresh-seed walks (the teacher and every path, one network call per step) dominate.
#
# ## Teacher distance on fresh seeds

# %%
for label, r in results.items():
    display(run.table(metric_table(r, "teacher"), f"sampling_schedules_{slug(label)}_teacher",
                      title=f"{label}: held-out teacher distance", caption=distance_caption(r)))

# %% [markdown]
# Lower is better: a smaller teacher distance means that the $K$-step sample lies closer to what the fine teacher makes from the same noise.
# The marks on the trajectory DP row come from the paired differences below.

# %%
for label, r in results.items():
    display(run.table(difference_table(r, "teacher"), f"sampling_schedules_{slug(label)}_differences",
                      title=f"{label}: trajectory DP minus each other path (paired, same fresh seeds)",
                      caption=distance_caption(r)))

# %% [markdown]
# A negative difference means the trajectory DP path is closer to the teacher; ‡ marks a difference within 2 paired SE, † one in which the other path is better beyond 2 SE.
#
# ## Where the trajectory DP path wins, ties or loses

# %%
lines = [line for r in results.values() for line in must_show_lines(r, must_show) + summary_lines(r, "teacher")]
display(run.text("".join(f"- {line}\n" for line in lines), "sampling_schedules_summary"))

# %% [markdown]
# These sentences are generated from the paired differences above; the must-show line says, for every budget where the trajectory DP path does not beat every baseline beyond 2 SE, which baseline prevents it and why.
#
# ## KID against held-out real images

# %%
for label, r in results.items():
    if r.kid:
        display(run.table(metric_table(r, "kid"), f"sampling_schedules_{slug(label)}_kid",
                          title=f"{label}: KID of the same samples", caption=kid_caption(r)))
        display(run.text("".join(f"- {line}\n" for line in summary_lines(r, "kid")),
                         f"sampling_schedules_{slug(label)}_kid_summary"))

# %% [markdown]
# KID compares the distribution of the samples with that of real images, not each sample with its teacher, so a path can be far from the teacher and still score well, or the reverse.
# With a few dozen samples per path its standard errors are wide; the sentences say which differences are beyond 2 paired SE.
#
# ## Teacher distance against the budget

# %%
for label, r in results.items():
    fig = plot_bpd_vs_budget(curves(r, "teacher"), f"{label}: held-out teacher distance", ylog=True,
                             ylabel="teacher distance (RMS per dimension, log scale)")
    display(run.figure(fig, f"sampling_schedules_{slug(label)}_teacher", caption=distance_caption(r)))

# %% [markdown]
# Error bars are ±1 SE over the fresh seeds; the paired differences above are much tighter, because every path starts from the same noise.
#
# ## The chosen timesteps over the trajectory table

# %%
for label, r in results.items():
    Ks = [K for K in must_show if K in r.budgets] or list(r.budgets[:3])
    fig = plot_table_heatmap(r.table, [(f"{TRAJECTORY}", r.paths[TRAJECTORY][K]) for K in Ks]
                             + [("ELBO DP", r.paths["ELBO DP"][Ks[-1]])],
                             title=f"{label}: C(t, s) with DP paths")
    display(run.figure(fig, f"sampling_schedules_{slug(label)}_heatmap", caption=selection_line(r)))
    print(format_paths(r.paths[TRAJECTORY], max_nodes=24))
    write_dp_json(r.table, r.solution, r.budgets, run.out / f"sampling_schedules_{slug(label)}_dp.json")

# %% [markdown]
# Rows are the edge's start $t$, columns its end $s$; adjacent teacher nodes cost exactly zero (blank cells cannot be drawn on a log scale), and the cost grows with the length of the jump $t - s$.
# The printed node lists are the trajectory DP paths (also written as a solved-schedule file, usable as `dp:FILE.json:K` with `--sampler ddim`); the ELBO DP path is drawn for contrast.

# %%
for label, r in results.items():
    display(run.figure(plot_dp_timesteps(r.paths[TRAJECTORY], r.T, title=f"{label}: trajectory DP timesteps"),
                       f"sampling_schedules_{slug(label)}_timesteps", caption=selection_line(r)))

# %% [markdown]
# One row per budget; compare with the ELBO DP timesteps of {ref}`nb-samples-and-schedules`, which crowd next to the data.
#
# ## Samples from shared noise

# %%
for label, r in results.items():
    fig = sample_grid_figure(grid_images(r, sample_budgets, n_grid_samples), nrow=2, panel_size=1.25,
                             title=f"{label}: the same x_T in every panel")
    display(run.figure(fig, f"sampling_schedules_{slug(label)}_samples",
                       caption=f"DDIM η = 0 samples of the first {n_grid_samples} fresh seeds; model `{r.model}`."))

# %% [markdown]
# Every panel starts from the same vectors $x_T$ and the sampler is deterministic, so the panels of one row differ by the budget and the rows by the path alone; the last row is the teacher.
#
# ## The Gaussian-data model
#
# For data drawn from a Gaussian fitted to the training images, $\varepsilon$ is known in closed form, so the trajectory table and the teacher carry no network error: the comparison isolates the schedule.

# %%
start = time.perf_counter()
gauss = load_experiment_model(gaussian_model, noise_schedule=gaussian_noise_schedule, device=device, data_dir=data_dir)
gtrain = load_data(gaussian_data, gaussian_elbo_images, data_dir=data_dir)
print(describe_model(gauss))
print(describe_data(gtrain, data_dir))
gelbo, _ = cached_table(gauss, gtrain, grid=grid_with_strides(elbo_grid, gaussian_budgets), cache_dir=run.cache,
                        **run.settings())
gaussian = run_sampling_schedules(gauss, gelbo, label="Gaussian data", budgets=gaussian_budgets,
                                  teacher_grid=gaussian_teacher_grid, grid=grid, n_selection=gaussian_seeds[0],
                                  n_fresh=gaussian_seeds[1], kid_mode="none", **run.settings())
display(run.table(metric_table(gaussian, "teacher"), "sampling_schedules_gaussian_teacher",
                  title="Gaussian data: held-out teacher distance", caption=distance_caption(gaussian)))

# %% [markdown]
# The same table as above for the exact model; KID is left out here, because its samples are Gaussian, not images a classifier's features describe.

# %%
display(run.text("".join(f"- {line}\n" for line in must_show_lines(gaussian, must_show)
                         + summary_lines(gaussian, "teacher")), "sampling_schedules_gaussian_summary"))

# %% [markdown]
# If the trajectory DP path wins here but not on a network, the difference lies in the network's errors, which the trajectory table averages over few seeds; if it loses here too, the additive cost itself is the limit.

# %% tags=["nbval-ignore-output"]
print(f"Gaussian-data section: {time.perf_counter() - start:.1f} s ({format_seconds(gaussian.seconds)})")

# %% [markdown]
# Wall time of the Gaussian-data section; fitting the Gaussian to the training images (an eigendecomposition of a 3072 × 3072 covariance) is most of it.
