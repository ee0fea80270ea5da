"""The data layer: pack ImageNet-layout folders into im2rec records, the training and validation
pipelines over them, record checks, synthetic batches and the bundled digits demo dataset."""

import warnings

from .digits import make_digits_imagenet
from .layout import DataError, read_classes, scan_image_folder
from .pack import pack
from .pipeline import (
    MEAN_RGB,
    STD_RGB,
    RecordInfo,
    SyntheticIter,
    ValIter,
    check_records,
    eval_transform,
    folder_val_loader,
    part_sizes,
    train_iter,
    val_iter,
)

# `python -m a2gluon.data.pack` / `.digits` import this package, which has already imported
# those modules to re-export their functions; runpy then warns that it runs a second copy as
# __main__.  That is harmless here (the modules keep no state), so the warning is silenced.
warnings.filterwarnings(
    "ignore", message=r".*'a2gluon\.data\.(pack|digits)' found in sys\.modules", category=RuntimeWarning
)

__all__ = [
    "MEAN_RGB",
    "STD_RGB",
    "DataError",
    "RecordInfo",
    "SyntheticIter",
    "ValIter",
    "check_records",
    "eval_transform",
    "folder_val_loader",
    "make_digits_imagenet",
    "pack",
    "part_sizes",
    "read_classes",
    "scan_image_folder",
    "train_iter",
    "val_iter",
]
