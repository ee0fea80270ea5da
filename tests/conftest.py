import os
import warnings

import mxnet as mx
import numpy as np
import pytest

os.environ.setdefault("MXNET_ENFORCE_DETERMINISM", "1")
warnings.filterwarnings("ignore", category=UserWarning, module="mxnet")


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
    np.random.seed(0)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "train_imagenet.py")
TEST_ENV = dict(os.environ, OMP_NUM_THREADS="2", MXNET_ENFORCE_DETERMINISM="1", PYTHONUNBUFFERED="1")
# a2_resnet26 at 32 x 32: small enough for CPU tests, with both A^2 blocks in place.
TINY = ["--model", "a2_resnet26", "--input-size", "32", "--num-data-workers", "1", "--log-interval", "5"]
# What the digits run uses (about 80 s on 2 cores); the training test states what it reached.
DIGITS_RECIPE = ["--batch-size", "32", "--num-epochs", "6", "--lr", "0.02", "--lr-mode", "cosine"]
DIGITS_RECIPE += ["--warmup-epochs", "1", "--min-random-area", "0.8", "--no-wd"]


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """scikit-learn's real digit scans in ImageNet layout (train/val), packed with the project's
    packer at 32 x 32: the flags that point train_imagenet.py / eval_imagenet.py at them."""
    from a2gluon.data import make_digits_imagenet, pack

    root = tmp_path_factory.mktemp("digits")
    made = make_digits_imagenet(root / "images", image_size=32)
    train = pack(made["train"], str(root / "train"), resize=32, num_workers=1, progress=False)
    val = pack(
        made["val"],
        str(root / "val"),
        resize=32,
        num_workers=1,
        classes=train["classes_json"],
        progress=False,
    )
    return {
        "dir": root,
        "images_dir": made,
        "train": ["--rec-train", train["rec"], "--rec-train-idx", train["idx"]],
        "val": ["--rec-val", val["rec"], "--rec-val-idx", val["idx"]],
        "images": (train["images"], val["images"]),
        "classes": train["classes"],
    }


@pytest.fixture(scope="session")
def digits_run(digits, tmp_path_factory):
    """train_imagenet.py run once for the session on the digits: (save_dir, completed process)."""
    import subprocess
    import sys

    save = tmp_path_factory.mktemp("digits_run") / "run"
    cmd = [sys.executable, TRAIN_SCRIPT] + TINY + digits["train"] + digits["val"] + DIGITS_RECIPE
    out = subprocess.run(
        cmd + ["--save-dir", str(save)], capture_output=True, text=True, timeout=900, env=TEST_ENV
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return save, out
