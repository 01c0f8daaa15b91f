"""Fine-tuning the embedded CIFAR-10 models on real pixels (the lossless 4,000 training images), and
installing the result into the package with its training history.

The runs (2-core CPU, one torch thread each, ``DDPMDP_DATA=../shared/data``); every stage starts from
the EMA weights of the one before (``--init-from``), keeps the model's objective, schedule and
architecture, and uses random horizontal flips and a cosine learning rate after 100 warm-up steps::

    # stage a (all three models): 3,000 steps, peak lr 5e-4, cosine down to 1e-5
    ddpmdp train --name cifar10-simple --init-from cifar10-simple --data cifar10-lossless:train \\
        --lr 5e-4 --warmup-steps 100 --lr-schedule cosine --lr-min 1e-5 --hflip --batch-size 64 \\
        --steps 6437 --threads 1 --out FT/simple_a          # 3,437 earlier steps + 3,000
    # (cifar10-hybrid: --steps 6620 --out FT/hybrid_a; cifar10-vlb: --steps 5979 --out FT/vlb_a)
    # stage b (cifar10-simple only, to see where it flattens): 3,000 more steps, peak lr 3e-4
    ddpmdp train --name cifar10-simple --init-from FT/simple_a/cifar10-simple.safetensors \\
        --data cifar10-lossless:train --lr 3e-4 --warmup-steps 100 --lr-schedule cosine --lr-min 1e-5 \\
        --hflip --batch-size 64 --steps 9437 --threads 1 --out FT/simple_b

    python scripts/finetune_lossless.py install ORIG_WEIGHTS_DIR FT/simple_a FT/simple_b FT/hybrid_a FT/vlb_a

``install`` copies each model's last stage (weights and card) into ``src/ddpmdp/models/weights/`` and
writes the card's ``training_history``: the stages of the original card (``ORIG_WEIGHTS_DIR`` holds
the cards the fine-tuning started from) followed by one entry per fine-tuning stage (data, images,
steps, wall minutes, optimiser, augmentation). The held-out numbers are then measured and written by
``scripts/lossless_check.py``.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def stage_entry(card: dict) -> dict:
    """One fine-tuning stage, from the card its run wrote."""
    init = card.get("initialised_from") or {}
    return {"data": card["data"], "data_identity": card.get("data_identity"),
            "n_train_images": card.get("n_train_images"), "steps": int(card["steps"]) - int(init.get("steps", 0)),
            "images": int(card["images_seen"]) - int(init.get("images_seen", 0)),
            "wall_minutes": round((float(card["wall_seconds"]) - float(init.get("wall_seconds", 0.0))) / 60.0, 1),
            "optimizer": card.get("optimizer"), "augmentation": card.get("augmentation"),
            "initialised_from_sha256": init.get("weights_sha256")}


def install(orig: Path, stages: list[Path]) -> int:
    from ddpmdp.models.embedded import weights_dir
    from ddpmdp.training.cards import training_history

    by_model: dict[str, list[dict]] = {}
    last: dict[str, Path] = {}
    for folder in stages:
        (card_path,) = [p for p in folder.glob("*.json")]
        card = json.loads(card_path.read_text())
        by_model.setdefault(card["name"], []).append(card)
        last[card["name"]] = card_path
    for name, cards in by_model.items():
        cards.sort(key=lambda c: c["steps"])
        for a, b in zip(cards, cards[1:]):  # each stage starts from the previous stage's weights
            assert b["initialised_from"]["weights_sha256"] == a["weights_sha256"], (name, "stages do not chain")
        original = json.loads((orig / f"{name}.json").read_text())
        assert cards[0]["initialised_from"]["weights_sha256"] == original["weights_sha256"], (name, "not from orig")
        final = dict(cards[-1])
        final["training_history"] = training_history(original) + [stage_entry(c) for c in cards]
        final["initialised_from"] = {k: v for k, v in final["initialised_from"].items() if k != "training_history"}
        for key in ("held_out", "held_out_lossless100", "held_out_jpeg100"):
            final.pop(key, None)  # measured again by scripts/lossless_check.py
        src = last[name].with_suffix(".safetensors")
        shutil.copyfile(src, weights_dir() / f"{name}.safetensors")
        (weights_dir() / f"{name}.json").write_text(json.dumps(final, indent=2) + "\n")
        print(f"{name}: {len(final['training_history'])} stages, {final['steps']} steps, "
              f"{final['wall_seconds'] / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "install":
        print(__doc__)
        sys.exit(2)
    sys.exit(install(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]))
