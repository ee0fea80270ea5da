"""Helpers shared by the attention blocks: convolutions by dimensionality and argument checks."""

from mxnet.gluon import nn

_CONV = {1: nn.Conv1D, 2: nn.Conv2D, 3: nn.Conv3D}
_LAYOUT = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, T, H, W)"}


def check_dims(dims, block):
    if dims not in _CONV:
        raise ValueError(f"{block}: dims must be 1, 2 or 3 (1-D, image or video input), got {dims!r}")


def check_positive(name, value, block):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{block}: {name} must be a positive integer, got {value!r}")


def reduced(in_channels, channels, reduction, name, block):
    """`channels` if given, else in_channels // reduction (at least 1); checked positive."""
    if channels is None:
        check_positive("reduction", reduction, block)
        channels = max(1, in_channels // reduction)
    check_positive(name, channels, block)
    return channels


def conv1x1(dims, channels, in_channels, use_bias=True, **kwargs):
    """A 1x1 (1x1x1 in 3-D) convolution."""
    return _CONV[dims](
        channels, kernel_size=(1,) * dims, in_channels=in_channels, use_bias=use_bias, **kwargs
    )


def fold4d(x, dims):
    """The 4-D view the blocks' 1x1 convolutions run on: N x C x T*H x W for video, N x C x L x 1
    for 1-D input.  A 1x1 convolution treats every position alone, so this changes no number,
    while it keeps MXNet 1.9.1 on oneDNN's 4-D path: its hybridized 3-D and 5-D paths give wrong
    results (or crash) when a softmax or autograd reads a reshaped blocked-layout output."""
    if dims == 3:
        return x.reshape((0, 0, -3, 0))
    if dims == 1:
        return x.expand_dims(axis=3)
    return x


def default_layout(F, y):
    """y itself, as a plain (non-oneDNN) copy.  slice_axis has no oneDNN kernel, so MXNet hands
    it y in the default layout; a reshape that merges the channel axis needs that, or the next
    oneDNN operator reads the blocked layout under the new shape (hybridized graphs)."""
    return F.slice_axis(y, axis=0, begin=0, end=None)


def unfold4d(F, y, x, dims):
    """y, computed on fold4d(x, dims), back in x's layout (y itself for 2-D input).

    y goes through default_layout before the reshape: when 3-D convolutions read the 5-D reshape
    of a blocked-layout 4-D sum, MXNet 1.9.1's oneDNN fails in hybridized backward ("could not
    create a primitive descriptor for a sum primitive"; in other graphs it corrupted the heap or
    hung, measured on a2_resnet50_3d); from the default layout the reshape is exact."""
    if dims == 2:
        return y
    return F.reshape_like(default_layout(F, y), x)


def maxpool_spatial(dims):
    """Max pooling by 2 over the spatial axes only, as a 2-D pooling of the 4-D view: over L for
    1-D input (N x C x L x 1), over H and W otherwise (video frames folded into channels, so
    1x2x2 as in Wang et al.)."""
    size = (2, 1) if dims == 1 else (2, 2)
    return nn.MaxPool2D(pool_size=size, strides=size)


def check_input(x, in_channels, dims, block):
    """Raise ValueError when an NDArray input does not fit the block (symbols pass unchecked)."""
    shape = getattr(x, "shape", None)
    if not isinstance(shape, tuple):
        return
    if len(shape) != dims + 2:
        raise ValueError(
            f"{block}: expected a {dims}-D input of layout {_LAYOUT[dims]} ({dims + 2} axes), "
            f"got shape {shape}; build the block with dims={len(shape) - 2} for this input"
            if 3 <= len(shape) <= 5
            else f"{block}: expected a {dims}-D input of layout {_LAYOUT[dims]}, got shape {shape}"
        )
    if shape[1] != in_channels:
        raise ValueError(
            f"{block}: input has {shape[1]} channels but the block was built with "
            f"in_channels={in_channels}; build it with in_channels={shape[1]}"
        )
