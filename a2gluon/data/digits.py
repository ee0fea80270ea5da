"""A small dataset of real images in ImageNet folder layout, from scikit-learn's bundled digits.

``sklearn.datasets.load_digits``: 1797 scans of handwritten digits, 8 x 8 pixels, 16 grey levels,
10 classes; the data ships inside scikit-learn (nothing is downloaded).  Each scan is written as
an RGB PNG, dark ink on white, upscaled to ``image_size`` with bicubic interpolation, into::

    ROOT/train/digit0/00000.png ... ROOT/train/digit9/...
    ROOT/val/digit0/...

with a stratified, seeded train/val split (file names are the scan's index in ``load_digits``).
``ROOT/digits.json`` records the settings; a second call with the same settings reuses the
folders.  CLI: ``a2gluon digits ROOT [--image-size 32] [--val-fraction 0.2]``.
"""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from .layout import DataError

CLASSES = tuple(f"digit{d}" for d in range(10))
MANIFEST = "digits.json"


def _split(target, val_fraction, seed):
    """Stratified split: per class, a seeded permutation; round(n * val_fraction) go to val."""
    rng = np.random.RandomState(seed)
    val = np.zeros(target.size, dtype=bool)
    for digit in range(len(CLASSES)):
        members = np.flatnonzero(target == digit)
        chosen = rng.permutation(members)[: int(round(members.size * val_fraction))]
        val[chosen] = True
    return val


def make_digits_imagenet(root, image_size=32, val_fraction=0.2, seed=0, force=False):
    """Write the digits as ``root/train`` and ``root/val`` ImageNet-layout folders.

    Returns ``dict(train=path, val=path, classes=[...], counts={'train': [...], 'val': [...]})``
    (counts per class in label order).  When ``root`` already holds a digits set made with the
    same settings it is reused; other contents of ``root/train`` or ``root/val`` raise
    :class:`DataError` unless ``force=True``, which rebuilds them.  Deterministic: the same
    arguments give byte-identical files.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("scikit-learn is not installed; `pip install -e .` installs it") from None
    if image_size < 8:
        raise DataError(f"image_size must be at least 8 (the scans are 8 x 8), got {image_size}")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(
            f"{root} exists and is not a folder; give the path of a folder to write the images to"
        )
    train_dir, val_dir = root / "train", root / "val"
    settings = {"image_size": image_size, "val_fraction": val_fraction, "seed": seed, "source": "load_digits"}
    manifest_path = root / MANIFEST
    made_by = "not made by make_digits_imagenet"
    if manifest_path.is_file() and not force:
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError:
            manifest = {}
        if manifest.get("settings") == settings and train_dir.is_dir() and val_dir.is_dir():
            return dict(
                train=str(train_dir), val=str(val_dir), classes=list(CLASSES), counts=manifest["counts"]
            )
        made_by = f"made with other settings ({manifest.get('settings')})"
    if (train_dir.exists() or val_dir.exists()) and not force:
        raise DataError(f"{root} already holds train/ or val/ {made_by}; use --force to rebuild")
    for folder in (train_dir, val_dir):
        if folder.exists():
            shutil.rmtree(folder)

    digits = load_digits()
    images, target = digits.images, digits.target
    is_val = _split(target, val_fraction, seed)
    counts = {"train": [0] * len(CLASSES), "val": [0] * len(CLASSES)}
    for folder in (train_dir, val_dir):
        for name in CLASSES:
            (folder / name).mkdir(parents=True, exist_ok=True)
    for index, (scan, digit) in enumerate(zip(images, target)):
        grey = np.clip(255.0 - scan * (255.0 / 16.0), 0, 255).astype(np.uint8)
        grey = cv2.resize(grey, (image_size, image_size), interpolation=cv2.INTER_CUBIC)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)  # the same in BGR; stored as 3 channels
        split = "val" if is_val[index] else "train"
        path = root / split / CLASSES[digit] / f"{index:05d}.png"
        if not cv2.imwrite(str(path), rgb):
            raise DataError(f"{path}: could not write the image; check the disk")
        counts[split][digit] += 1
    manifest_path.write_text(
        json.dumps({"settings": settings, "counts": counts}, indent=1) + "\n", encoding="utf-8"
    )
    return dict(train=str(train_dir), val=str(val_dir), classes=list(CLASSES), counts=counts)
