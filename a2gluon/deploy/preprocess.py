"""Images for prediction, read and preprocessed exactly as evaluation reads them: the packer's
rule for what decodes, MXNet's own decoder for the pixels (the one ImageRecordIter uses), and
a2gluon.data's evaluation transform (shorter side to ceil(input_size / crop_ratio) rounded as
MXNet rounds, centre crop, ImageNet normalisation).  Predict and eval see the same tensor."""

import os

import mxnet as mx

from ..data.pipeline import decode_image, eval_transform


class ImageReadError(ValueError):
    """An image file cannot be read; the message says which and why."""


def read_image(path):
    """An H x W x 3 uint8 RGB NDArray decoded by MXNet from an image file the packer would take."""
    if os.path.isdir(path):
        raise ImageReadError(
            f"{path} is a directory, not an image file; give image files (e.g. {os.path.join(path, '*.jpg')})"
        )
    if not os.path.isfile(path):
        raise ImageReadError(f"image {path} does not exist; give the path of an image file")
    data, image = decode_image(path)
    if image is None:
        raise ImageReadError(
            f"cannot decode {path} as an image (corrupt or not an image); give a JPEG, PNG or "
            "other image OpenCV reads"
        )
    return mx.image.imdecode(data.tobytes(), flag=1, to_rgb=True)


def load_batch(paths, input_size=224, crop_ratio=0.875):
    """N x 3 x input_size x input_size float32 NDArray from image files, as evaluation makes it."""
    transform = eval_transform(input_size, crop_ratio)
    return mx.nd.stack(*[transform(read_image(p)) for p in paths])
