"""Train the proxy-FID classifier that ddpmdp ships (``src/ddpmdp/fid/weights/``).

Usage (about 3 minutes on one CPU thread)::

    DDPMDP_DATA=../shared/data python scripts/train_proxy.py

It trains :class:`ddpmdp.fid.proxy.ProxyCNN` with the defaults of
:func:`ddpmdp.fid.proxy.train_proxy_classifier` (seed 0, float32, 1200 AdamW steps of 128 images,
one thread) on the CIFAR-10 training files under ``$DDPMDP_DATA``, scores it on the test files, and
writes ``proxy_cnn_seed0.safetensors`` with a ``.json`` card (the training report, the data's
identity and sha256, the weights' sha256 and this command). Float32 training on another CPU gives
slightly different weights; that is why the package ships one file instead of training on first use.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import save_file

from ddpmdp.data.images import data_root
from ddpmdp.fid.proxy import SHIPPED_PROXY, load_cifar10_labelled, train_proxy_classifier
from ddpmdp.fileio import file_sha256


def main(out: Path = SHIPPED_PROXY) -> int:
    train, y = load_cifar10_labelled("train", download=False)
    test, y_test = load_cifar10_labelled("test", download=False)
    root = str(data_root(None))
    info = {"train": train.identity, "train_sha": train.fingerprint(), "n_train": len(train),
            "test": test.identity, "test_sha": test.fingerprint(),
            "notes": [n.replace(root, "$DDPMDP_DATA") for n in train.notes + test.notes]}
    net, report = train_proxy_classifier(train.images, y, test.images, y_test, seed=0, data_info=info, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    card = asdict(report)
    card.update(weights=out.name, weights_sha256=file_sha256(out), command="python scripts/train_proxy.py",
                label="proxy-FID: ranks samplers of one model; not comparable to published FIDs")
    out.with_suffix(".json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    print(f"{out}: test accuracy {report.test_accuracy:.4f} on {report.n_test} images, {report.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED_PROXY))
