"""The evaluation preprocessing, written once: read an image, resize its shorter side to
ceil(input_size / 0.875), centre-crop input_size x input_size, normalise on the 0-255 RGB scale
with the ImageNet mean and std, and lay it out as 1 x 3 x H x W float32."""

import math
import os

import cv2
import numpy as np

CROP_RATIO = 0.875
MEAN_RGB = (123.68, 116.779, 103.939)
STD_RGB = (58.393, 57.12, 57.375)


class ImageReadError(ValueError):
    """An image file cannot be read; the message says which and why."""


def resize_size(input_size, crop_ratio=CROP_RATIO):
    """The shorter side before the centre crop: 256 for 224."""
    return int(math.ceil(input_size / crop_ratio))


def read_image(path):
    """An H x W x 3 uint8 RGB array from an image file (anything OpenCV decodes)."""
    if os.path.isdir(path):
        raise ImageReadError(
            f"{path} is a directory, not an image file; give image files (e.g. {os.path.join(path, '*.jpg')})"
        )
    if not os.path.isfile(path):
        raise ImageReadError(f"image {path} does not exist; give the path of an image file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageReadError(
            f"cannot decode {path} as an image (corrupt or not an image); give a JPEG, PNG or "
            "other image OpenCV reads"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_short(image, size, interpolation=cv2.INTER_LINEAR):
    """Resize so that the shorter side is `size`, keeping the aspect ratio."""
    h, w = image.shape[:2]
    if h <= w:
        new_h, new_w = size, max(1, int(round(w * size / h)))
    else:
        new_h, new_w = max(1, int(round(h * size / w))), size
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def center_crop(image, size):
    """The central size x size window (the image must be at least that large)."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def normalize(image):
    """H x W x 3 RGB (0-255) -> 3 x H x W float32, (x - mean) / std per channel."""
    x = (image.astype(np.float32) - np.array(MEAN_RGB, np.float32)) / np.array(STD_RGB, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(image, input_size=224, crop_ratio=CROP_RATIO):
    """An RGB uint8 image (H x W x 3) -> 3 x input_size x input_size float32, the evaluation
    transform: shorter side to ceil(input_size / crop_ratio), centre crop, normalise."""
    image = resize_short(image, resize_size(input_size, crop_ratio))
    return normalize(center_crop(image, input_size))


def load_batch(paths, input_size=224, crop_ratio=CROP_RATIO):
    """N x 3 x input_size x input_size float32 from image files."""
    return np.stack([preprocess(read_image(p), input_size, crop_ratio) for p in paths])
