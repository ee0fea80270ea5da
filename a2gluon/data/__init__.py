"""The data layer: pack ImageNet-layout folders into im2rec records, the training and validation
pipelines over them, record checks (headers, and a deep check that decodes every image),
synthetic batches and the bundled digits demo dataset."""

from ..signals import Terminated
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
from .verify import (
    BadRecord,
    VerifyResult,
    crash_signal_name,
    describe_crash,
    known_bad_records,
    refuse_known_bad_records,
    verify_records,
    write_clean_records,
)

__all__ = [
    "MEAN_RGB",
    "STD_RGB",
    "BadRecord",
    "DataError",
    "RecordInfo",
    "SyntheticIter",
    "Terminated",
    "ValIter",
    "VerifyResult",
    "check_records",
    "crash_signal_name",
    "describe_crash",
    "eval_transform",
    "folder_val_loader",
    "known_bad_records",
    "make_digits_imagenet",
    "pack",
    "part_sizes",
    "read_classes",
    "refuse_known_bad_records",
    "scan_image_folder",
    "train_iter",
    "val_iter",
    "verify_records",
    "write_clean_records",
]
