"""Small DDPMs shipped with the package, one per training objective of the paper.

=====================  =========  =====================  ======  ========  ====================
name                   objective  data                   T       schedule  variance
=====================  =========  =====================  ======  ========  ====================
``cifar10-simple``     L_simple   CIFAR-10 32×32         1000    linear    fixed_large (ε only)
``cifar10-hybrid``     L_hybrid   CIFAR-10 32×32         1000    cosine    learned_range (ε+v)
``cifar10-vlb``        L_vlb      CIFAR-10 32×32         1000    cosine    learned_range (ε+v)
``imagenet64-hybrid``  L_hybrid   Tiny-ImageNet 64×64    1000    cosine    learned_range (ε+v)
=====================  =========  =====================  ======  ========  ====================

Each is an improved-diffusion UNet (:class:`~ddpmdp.models.nets.iddpm_unet.IDDPMUNet`) small enough
for CPU training: about 2M parameters, stored as **float16** ``.safetensors`` (≤ 5 MB) next
to a JSON model card in ``ddpmdp/weights/`` (``NAME.safetensors`` + ``NAME.json``). The
paper's L_vlb and L_hybrid models use T = 4000; the embedded ones use T = 1000 because of
the CPU training budget (stated in each card). The network time input is improved-diffusion's
rescaled float (n − 1)·1000/T (``time_input='iddpm'``; for T = 1000 this is n − 1).

Model specs (registered with :func:`ddpmdp.models.specs.register_model_spec`):

* ``NAME`` — the shipped weights, e.g. ``--model cifar10-hybrid``;
* ``NAME:PATH`` — the same architecture with weights from ``PATH`` (a ``.safetensors``
  written by ``ddpmdp train``, with its card ``PATH`` minus suffix + ``.json`` beside it).

On load the file's sha256 is compared with the card's ``weights_sha256``; a missing,
truncated or corrupt file raises :class:`~ddpmdp.errors.DdpmdpError` naming the file.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ddpmdp.fileio import file_sha256
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.models.adapter import DiffusionModel, ModelInfo, Numerics, TorchModelAdapter
from ddpmdp.models.state_dicts import check_keys, expected_shapes, load_into, read_state_dict
from ddpmdp.models.nets.iddpm_unet import IDDPMConfig, IDDPMUNet, get_preset

__all__ = ["EmbeddedModel", "EMBEDDED", "WEIGHTS_DIR", "CARD_FORMAT", "weights_dir", "embedded_models",
           "load_embedded", "adapter_from_file", "config_to_dict", "resolve_architecture", "bpd_note"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Where the shipped ``NAME.safetensors`` and ``NAME.json`` live (tests monkeypatch this)."""

CARD_FORMAT = "ddpmdp-model-card-v1"

T_NOTE = ("T = 1000 instead of the paper's 4000 (L_vlb and L_hybrid rows) because of the CPU training budget; "
          "these embedded models are not the paper's checkpoints")
BPD_NOTE = ("These bits/dim are far above the paper's 3–4 bits/dim because the models are tiny (about 2M "
            "parameters) and briefly trained on CPU.")
BPD_NOTE_LOW = ("These bits/dim are not comparable to the paper's 3–4 bits/dim: the models are tiny (about 2M "
                "parameters) and briefly trained on CPU, and the held-out images are not the paper's (the shared "
                "CIFAR-10 copy is decoded from JPEG, which smooths the images and lowers bits/dim; the 64×64 set is "
                "Tiny-ImageNet, not ImageNet 64).")


BPD_NOTE_LOSSLESS = ("Measured on the 100 exact CIFAR-10 test images (cifar10-lossless:test) after fine-tuning on "
                     "the 4,000 exact training images (cifar10-lossless:train). Still not comparable to the paper's "
                     "numbers: the models are tiny (about 2M parameters) and briefly trained on CPU, and 100 test "
                     "images are not the 10,000 of the official test set.")


def bpd_note(bpd: float | None, *, lossless: bool = False) -> str:
    """The card's plain-language caveat: :data:`BPD_NOTE_LOSSLESS` for numbers on the exact CIFAR-10
    pixels; else :data:`BPD_NOTE`, or :data:`BPD_NOTE_LOW` when the measured held-out bpd is below 4.2
    (where "far above 3–4" would not be true)."""
    if lossless:
        return BPD_NOTE_LOSSLESS
    return BPD_NOTE_LOW if bpd is not None and bpd < 4.2 else BPD_NOTE


@dataclass(frozen=True)
class EmbeddedModel:
    """One shipped model: its architecture (which fixes schedule, T and head), objective and data."""

    name: str
    config: IDDPMConfig
    objective: str
    data: str
    eval_data: str
    description: str

    @property
    def variance(self) -> str:
        """The variance rule the model was trained for (``learned_range`` or ``fixed_large``)."""
        return self.config.variance


# CIFAR-10 32×32: channels 32, 32, 64, 96 at 32, 16, 8, 4 pixels, attention at 8×8 and in the middle,
# one ResBlock per level: 1,966,054 parameters with the ε+v head (1,965,187 ε-only), about
# 60 training images/s on one CPU thread. cifar10-small (mult (1, 1, 2, 4)) has 2.83M and
# would not fit 5 MB in float16 with headroom; dropout is off because these runs underfit.
_CIFAR = get_preset("cifar10-small").with_(channel_mult=(1, 1, 2, 3), dropout=0.0, diffusion_steps=1000,
                                            release_files=())
# 64×64: channels 32, 32, 32, 64, 96 at 64…4 pixels, attention at 8×8: 2,087,910 parameters,
# about 20 training images/s on one thread (the 64×64 level dominates).
_IN64 = get_preset("imagenet64-small").with_(channel_mult=(1, 1, 1, 2, 3), dropout=0.0, diffusion_steps=1000,
                                             release_files=())

EMBEDDED: dict[str, EmbeddedModel] = {
    "cifar10-simple": EmbeddedModel(
        "cifar10-simple",
        _CIFAR.with_(name="cifar10-simple-embedded", learn_sigma=False, noise_schedule="linear",
                     description="embedded CPU model, CIFAR-10, L_simple, linear T=1000, ε only (fixed_large)"),
        "simple", "cifar10-lossless:train", "cifar10-lossless:test",
        "CIFAR-10 32×32, L_simple, linear schedule, T = 1000 (as Ho et al.), fixed-large variance, ε-only head"),
    "cifar10-hybrid": EmbeddedModel(
        "cifar10-hybrid",
        _CIFAR.with_(name="cifar10-hybrid-embedded", learn_sigma=True, noise_schedule="cosine",
                     description="embedded CPU model, CIFAR-10, L_hybrid, cosine T=1000, learned range"),
        "hybrid", "cifar10-lossless:train", "cifar10-lossless:test",
        "CIFAR-10 32×32, L_hybrid (λ = 0.001), cosine schedule, T = 1000, learned-range variance"),
    "cifar10-vlb": EmbeddedModel(
        "cifar10-vlb",
        _CIFAR.with_(name="cifar10-vlb-embedded", learn_sigma=True, noise_schedule="cosine",
                     description="embedded CPU model, CIFAR-10, L_vlb, cosine T=1000, learned range"),
        "vlb", "cifar10-lossless:train", "cifar10-lossless:test",
        "CIFAR-10 32×32, L_vlb with importance-sampled t, cosine schedule, T = 1000, learned-range variance"),
    "imagenet64-hybrid": EmbeddedModel(
        "imagenet64-hybrid",
        _IN64.with_(name="imagenet64-hybrid-embedded", learn_sigma=True, noise_schedule="cosine",
                    description="embedded CPU model, Tiny-ImageNet 64×64, L_hybrid, cosine T=1000, learned range"),
        "hybrid", "tiny-imagenet64:train", "tiny-imagenet64:test",
        "64×64 Tiny-ImageNet (a stand-in for ImageNet 64), L_hybrid (λ = 0.001), cosine schedule, T = 1000, "
        "learned-range variance"),
}


def weights_dir() -> Path:
    """The current weights folder (reads :data:`WEIGHTS_DIR` at call time)."""
    return Path(WEIGHTS_DIR)


def config_to_dict(cfg: IDDPMConfig) -> dict[str, Any]:
    """An :class:`IDDPMConfig` as JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def resolve_architecture(preset: str | IDDPMConfig) -> IDDPMConfig:
    """An embedded model name → its architecture; another name → :func:`get_preset`; a config → itself."""
    if isinstance(preset, IDDPMConfig):
        return preset
    if preset in EMBEDDED:
        return EMBEDDED[preset].config
    return get_preset(preset)


def adapter_from_file(cfg: IDDPMConfig, weights: Path, *, device: str = "cpu", identity: str = "",
                      numerics: Numerics = Numerics(), info: ModelInfo | None = None) -> TorchModelAdapter:
    """Build ``IDDPMUNet(cfg)`` and load a (float16 or float32) ``.safetensors`` into it as float32.

    Strict (:mod:`ddpmdp.models.state_dicts`): every key and shape must match. No card or
    checksum checks (see :func:`load_embedded`). The adapter gets ``cfg``'s schedule, ``output``
    (``eps`` or ``eps+v``), ``time_input``, variance rule and ``image_shape`` = (C, H, W).
    """
    raw = read_state_dict(weights)
    check_keys(raw, expected_shapes(lambda: IDDPMUNet(cfg)), weights, f"the architecture {cfg.name!r}")
    net = load_into(lambda: IDDPMUNet(cfg), {k: v.float() for k, v in raw.items()}, device)
    ident = identity or f"{cfg.name}:{weights.name}"
    return TorchModelAdapter(net, cfg.schedule(), time_input=cfg.time_input,  # type: ignore[arg-type]
                             output=cfg.output, identity=ident,  # type: ignore[arg-type]
                             image_shape=(cfg.in_channels, cfg.image_size, cfg.image_size), numerics=numerics,
                             variance=cfg.variance, info=info)  # type: ignore[arg-type]


def _read_card(card: Path, weights: Path) -> dict[str, Any]:
    require(card.is_file(), f"the model card {card} is missing (it must sit beside {weights.name}); "
            "reinstall ddpmdp or copy NAME.json from the training output folder")
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError) as exc:
        raise DdpmdpError(f"the model card {card} is not readable JSON (truncated or corrupt: {exc}); "
                          "reinstall ddpmdp") from None
    require(isinstance(data, dict) and "weights_sha256" in data,
            f"the model card {card} has no weights_sha256 entry; reinstall ddpmdp")
    return data


def check_weights_file(name: str, weights: Path, card_path: Path) -> dict[str, Any]:
    """Existence, size and sha256 of ``weights`` against its card; returns the card."""
    if not weights.is_file():
        where = weights.parent
        raise DdpmdpError(
            f"embedded model {name!r} has no weights: {weights} is missing. This installation does not ship "
            f"them yet (or they were deleted): train it with `ddpmdp train --name {name} ...` and copy "
            f"{name}.safetensors and {name}.json into {where}, or reinstall ddpmdp")
    card = _read_card(card_path, weights)
    size = weights.stat().st_size
    want_size = card.get("weights_bytes")
    if isinstance(want_size, int) and size != want_size:
        raise DdpmdpError(f"{weights} is truncated or corrupt: {size} bytes, but its card {card_path.name} says "
                          f"{want_size}; reinstall ddpmdp (or copy the trained file again)")
    sha = file_sha256(weights)
    if sha != card["weights_sha256"]:
        raise DdpmdpError(f"{weights} is corrupt: sha256 {sha[:16]}… differs from {card['weights_sha256'][:16]}… "
                          f"in its card {card_path.name}; reinstall ddpmdp (or copy the trained file again)")
    return card


def load_embedded(name: str, path: str | Path | None = None, *, device: str = "cpu",
                  numerics: Numerics = Numerics()) -> TorchModelAdapter:
    """An embedded model as a :class:`~ddpmdp.models.adapter.TorchModelAdapter`.

    ``path=None`` reads ``weights_dir()/NAME.safetensors``; otherwise ``path`` (its card is the
    same path with suffix ``.json``). Checks, in order: the weights file exists, the card exists
    and parses, the file size and sha256 equal the card's, the card names this model and its
    architecture equals :data:`EMBEDDED`'s, and the keys and shapes match strictly. Every
    failure raises :class:`DdpmdpError` naming the file. ``adapter.info`` is a model-info
    dictionary whose ``card`` entry holds the model card; ``adapter.variance`` is the rule.
    """
    require(name in EMBEDDED, f"unknown embedded model {name!r}: use one of {', '.join(EMBEDDED)}")
    entry = EMBEDDED[name]
    weights = Path(path).expanduser() if path else weights_dir() / f"{name}.safetensors"
    card_path = weights.with_suffix(".json")
    card = check_weights_file(name, weights, card_path)
    if card.get("name") != name:
        raise DdpmdpError(f"the card {card_path} describes model {card.get('name')!r}, not {name!r}; "
                          f"load it as {card.get('name')}:{weights}")
    if card.get("architecture") != config_to_dict(entry.config):
        raise DdpmdpError(f"the card {card_path} was written for a different architecture than the embedded "
                          f"{name!r} (trained with another --preset?); retrain with --preset {name}")
    sha = card["weights_sha256"]
    cfg = entry.config
    with torch.device("meta"):
        n_params = sum(p.numel() for p in IDDPMUNet(cfg).parameters())
    info: ModelInfo = {
        "spec": name if path is None else f"{name}:{weights}", "architecture": "improved-diffusion UNet (embedded)",
        "preset": cfg.name, "parameters": n_params, "schedule": cfg.schedule_spec, "T": cfg.diffusion_steps,
        "variance": cfg.variance, "output": cfg.output, "time_input": cfg.time_input, "image_size": cfg.image_size,
        "file": str(weights), "file_sha256": sha, "weights": "file", "objective": entry.objective, "card": card,
    }
    adapter = adapter_from_file(cfg, weights, device=device, identity=f"{name}@{sha[:12]}", numerics=numerics,
                                info=info)
    adapter.info["state_dict_keys"] = len(adapter.net.state_dict())
    return adapter


def embedded_models() -> dict[str, dict[str, Any]]:
    """Every embedded model name → a summary: description, objective, schedule, T, variance,
    training/evaluation data, ``available`` (weights file present) and ``card`` (the parsed JSON
    card, or None when absent or unreadable). Checksums are not verified here."""
    out: dict[str, dict[str, Any]] = {}
    for name, e in EMBEDDED.items():
        weights = weights_dir() / f"{name}.safetensors"
        card = None
        card_path = weights.with_suffix(".json")
        if card_path.is_file():
            try:
                card = json.loads(card_path.read_text())
            except (OSError, ValueError):
                card = None
        out[name] = {"name": name, "description": e.description, "objective": e.objective,
                     "schedule": e.config.schedule_spec, "T": e.config.diffusion_steps, "variance": e.variance,
                     "data": e.data, "eval_data": e.eval_data, "available": weights.is_file(),
                     "weights": str(weights), "card": card}
    return out


MODEL_TABLE_COLUMNS = ("name", "objective", "schedule", "T", "variance", "parameters", "steps", "train_minutes",
                       "heldout_bpd", "heldout_bpd_se", "heldout_split", "heldout_images", "lossless100_bpd",
                       "lossless100_bpd_se", "jpeg100_bpd", "jpeg100_bpd_se", "lossless100_note", "available")


def model_table() -> list[dict[str, Any]]:
    """One row per embedded model, read from its card: objective, diffusion, size, training and the
    held-out full-chain bits/dim ± SE with the split and number of images it was measured on;
    ``lossless100``/``jpeg100`` the full chain on the 100 lossless CIFAR-10 test images and on
    their JPEG-decoded copies (None where not measured; ``lossless100_note`` says why, e.g. for a
    64×64 model, for which no lossless set exists)."""
    rows = []
    for name, entry in embedded_models().items():
        card = entry["card"] or {}
        held = card.get("held_out") or {}
        rows.append({"name": name, "objective": entry["objective"], "schedule": entry["schedule"], "T": entry["T"],
                     "variance": entry["variance"], "parameters": card.get("parameters"), "steps": card.get("steps"),
                     "train_minutes": round(card["wall_seconds"] / 60, 1) if "wall_seconds" in card else None,
                     "heldout_bpd": held.get("bpd"), "heldout_bpd_se": held.get("bpd_se"),
                     "heldout_split": held.get("data"), "heldout_images": held.get("n_images"),
                     **{f"{k}_{q}": (card.get(f"held_out_{k}") or {}).get(q) for k in ("lossless100", "jpeg100")
                        for q in ("bpd", "bpd_se")},
                     "lossless100_note": (card.get("held_out_lossless100") or {}).get("note"),
                     "available": entry["available"]})
    return rows


def embedded_spec(name: str) -> Callable[..., DiffusionModel]:
    """The model-spec loader of embedded model ``name`` (``NAME`` or ``NAME:PATH``)."""

    def loader(argument: str, *, device: str = "cpu", schedule: str | None = None, output: str | None = None,
               time_input: str | None = None, numerics: Numerics = Numerics(), **_: Any) -> DiffusionModel:
        cfg = EMBEDDED[name].config
        from ddpmdp.schedules import parse_schedule

        if schedule is not None and parse_schedule(schedule) != cfg.schedule():
            raise DdpmdpError(f"{name} was trained with schedule {cfg.schedule_spec}; drop --noise-schedule {schedule}")
        if output is not None and output != cfg.output:
            raise DdpmdpError(f"{name} produces output {cfg.output!r}, not {output!r}; drop --output")
        if time_input is not None and time_input != cfg.time_input:
            raise DdpmdpError(f"{name} needs time input {cfg.time_input!r}, not {time_input!r}; drop --time-input")
        return load_embedded(name, argument or None, device=device, numerics=numerics)

    return loader

