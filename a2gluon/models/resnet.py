"""Bottleneck ResNets for images (2-D) and video clips (3-D) with attention blocks placed
after chosen residual units: the backbones of the A^2-Nets paper."""

from dataclasses import dataclass

from mxnet.gluon import nn

from ..nn import ATTENTIONS, make_attention
from ..nn._common import _CONV

_BN_KW = {"epsilon": 1e-5, "momentum": 0.9}


@dataclass(frozen=True)
class Stem:
    channels: int
    kernel: int = 5  # spatial kernel size
    temporal_kernel: int = 3  # video only
    maxpool: bool = True


@dataclass(frozen=True)
class Stage:
    """One stage: `units` bottleneck units [1x1, width; k x 3 x 3, width; 1x1, channels]."""

    name: str
    units: int
    width: int
    channels: int
    stride: int = 2  # spatial stride of the first unit
    temporal_stride: int = 1  # video only: temporal stride of the first unit
    temporal_kernels: tuple = ()  # video only: k of each unit's middle convolution


def _kernel(dims, temporal, spatial):
    return (temporal, spatial, spatial) if dims == 3 else (spatial,) * dims


class FoldedBatchNorm(nn.BatchNorm):
    """BatchNorm for N x C x T x H x W video tensors, computed on their 4-D view N x C x T*H x W.

    The statistics are per channel over N, T, H and W either way, so the numbers are those of
    a BatchNorm on the 5-D tensor; the parameters (gamma, beta, running mean and variance) and
    their names are those of nn.BatchNorm.  The reason is MXNet 1.9.1 with oneDNN on CPU: a
    BatchNorm reading a Conv3D output fails in backward (``Check failed: !is_view``,
    ndarray.cc:649), imperative and hybridized, while the 4-D view trains."""

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        y = super().hybrid_forward(F, x.reshape((0, 0, -3, 0)), gamma, beta, running_mean, running_var)
        return F.reshape_like(y, x)


def batch_norm(dims, channels, **kwargs):
    """The BatchNorm after a `dims`-D convolution: nn.BatchNorm for images, FoldedBatchNorm
    (the same parameters, trainable under oneDNN) for video."""
    return (FoldedBatchNorm if dims == 3 else nn.BatchNorm)(in_channels=channels, **_BN_KW, **kwargs)


def parse_blocks(blocks, stages):
    """['conv3:2', ...] or 'conv3:2,conv4:1' -> sorted [(stage name, unit), ...], validated."""
    if isinstance(blocks, str):
        blocks = [b for b in blocks.replace(" ", "").split(",") if b]
    units = {s.name: s.units for s in stages}
    parsed = []
    for item in blocks:
        stage, sep, unit = str(item).partition(":")
        if not sep or not unit.isdigit():
            raise ValueError(
                f"blocks: {item!r} is not of the form 'convS:U' (after the U-th unit of stage convS)"
            )
        if stage not in units:
            raise ValueError(
                f"blocks: {item!r} names no stage of this network; stages are {', '.join(units)}"
            )
        if not 1 <= int(unit) <= units[stage]:
            raise ValueError(f"blocks: {item!r}: stage {stage} has units 1..{units[stage]}")
        if (stage, int(unit)) in parsed:
            raise ValueError(f"blocks: {item!r} is given twice")
        parsed.append((stage, int(unit)))
    order = [s.name for s in stages]
    return sorted(parsed, key=lambda p: (order.index(p[0]), p[1]))


def check_attention(attention, blocks, default_blocks, stages):
    """Validate attention/blocks and return the parsed positions ([] without attention)."""
    if attention is None:
        if blocks:
            raise ValueError("blocks= places attention blocks: give attention='a2' or 'nonlocal' too")
        return []
    if attention not in ATTENTIONS:
        *first, last = (repr(k) for k in ATTENTIONS)
        raise ValueError(f"attention must be None, {', '.join(first)} or {last}, got {attention!r}")
    return parse_blocks(default_blocks if blocks is None else blocks, stages)


class Bottleneck(nn.HybridBlock):
    """Bottleneck residual unit with the stride on the 3x3 convolution (ResNet v1b / v1.5)."""

    def __init__(
        self,
        dims,
        in_channels,
        width,
        channels,
        stride=1,
        temporal_stride=1,
        temporal_kernel=3,
        last_gamma=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        conv = _CONV[dims]
        strides = _kernel(dims, temporal_stride, stride)
        k = _kernel(dims, temporal_kernel, 3)
        with self.name_scope():
            self.conv1 = conv(
                width, _kernel(dims, 1, 1), in_channels=in_channels, use_bias=False, prefix="conv1_"
            )
            self.bn1 = batch_norm(dims, width, prefix="bn1_")
            self.conv2 = conv(
                width,
                k,
                strides=strides,
                padding=tuple(i // 2 for i in k),
                in_channels=width,
                use_bias=False,
                prefix="conv2_",
            )
            self.bn2 = batch_norm(dims, width, prefix="bn2_")
            self.conv3 = conv(
                channels, _kernel(dims, 1, 1), in_channels=width, use_bias=False, prefix="conv3_"
            )
            self.bn3 = batch_norm(
                dims, channels, gamma_initializer="zeros" if last_gamma else "ones", prefix="bn3_"
            )
            if in_channels != channels or stride != 1 or temporal_stride != 1:
                self.downsample = nn.HybridSequential(prefix="down_")
                self.downsample.add(
                    conv(
                        channels,
                        _kernel(dims, 1, 1),
                        strides=strides,
                        in_channels=in_channels,
                        use_bias=False,
                        prefix="conv_",
                    )
                )
                self.downsample.add(batch_norm(dims, channels, prefix="bn_"))
            else:
                self.downsample = None

    def hybrid_forward(self, F, x):
        out = F.Activation(self.bn1(self.conv1(x)), act_type="relu")
        out = F.Activation(self.bn2(self.conv2(out)), act_type="relu")
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.Activation(out + shortcut, act_type="relu")


class ResNet(nn.HybridBlock):
    """A bottleneck ResNet over `dims` (2: N x 3 x H x W, 3: N x 3 x T x H x W) built from a
    stem and stage specs, with `attention` blocks ('a2' or 'nonlocal') after the residual units
    named in `blocks` ('convS:U', 1-based).  Layout as Gluon-CV: `features` then `output`."""

    def __init__(
        self,
        stem,
        stages,
        dims=2,
        classes=1000,
        attention=None,
        blocks=None,
        default_blocks=(),
        reduction=4,
        last_gamma=False,
        dropout=0.0,
        attention_kwargs=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 (images) or 3 (video), got {dims!r}")
        if not isinstance(classes, int) or classes <= 0:
            raise ValueError(f"classes must be a positive integer, got {classes!r}")
        self.dims = dims
        self.classes = classes
        self.attention = attention
        self.positions = check_attention(attention, blocks, default_blocks, stages)
        self.blocks = [f"{s}:{u}" for s, u in self.positions]
        self.reduction = reduction
        conv = _CONV[dims]
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            k = _kernel(dims, stem.temporal_kernel, stem.kernel)
            self.features.add(
                conv(
                    stem.channels,
                    k,
                    strides=_kernel(dims, 1, 2),
                    padding=tuple(i // 2 for i in k),
                    in_channels=3,
                    use_bias=False,
                    prefix="conv1_",
                )
            )
            self.features.add(batch_norm(dims, stem.channels, prefix="conv1_bn_"))
            self.features.add(nn.Activation("relu"))
            if stem.maxpool:
                pool = nn.MaxPool3D if dims == 3 else nn.MaxPool2D
                self.features.add(
                    pool(
                        pool_size=_kernel(dims, 1, 3),
                        strides=_kernel(dims, 1, 2),
                        padding=_kernel(dims, 0, 1),
                    )
                )
            in_channels = stem.channels
            for stage in stages:
                seq = nn.HybridSequential(prefix=f"{stage.name}_")
                with seq.name_scope():
                    for u in range(1, stage.units + 1):
                        first = u == 1
                        tk = stage.temporal_kernels[u - 1] if stage.temporal_kernels else 3
                        seq.add(
                            Bottleneck(
                                dims,
                                in_channels,
                                stage.width,
                                stage.channels,
                                stride=stage.stride if first else 1,
                                temporal_stride=stage.temporal_stride if first else 1,
                                temporal_kernel=tk,
                                last_gamma=last_gamma,
                                prefix=f"unit{u}_",
                            )
                        )
                        in_channels = stage.channels
                        if (stage.name, u) in self.positions:
                            seq.add(
                                make_attention(
                                    attention,
                                    in_channels,
                                    reduction=reduction,
                                    dims=dims,
                                    prefix=f"{attention}{u}_",
                                    **(attention_kwargs or {}),
                                )
                            )
                self.features.add(seq)
            self.features.add(nn.GlobalAvgPool3D() if dims == 3 else nn.GlobalAvgPool2D())
            self.features.add(nn.Flatten())
            if dropout:
                self.features.add(nn.Dropout(dropout))
            self.output = nn.Dense(classes, in_units=in_channels)

    def forward(self, x, *args):
        shape = getattr(x, "shape", None)
        if isinstance(shape, tuple):
            layout = "N x 3 x T x H x W" if self.dims == 3 else "N x 3 x H x W"
            if len(shape) != self.dims + 2 or shape[1] != 3:
                raise ValueError(
                    f"{type(self).__name__}: expects input of layout {layout}, got shape {shape}"
                )
        return super().forward(x, *args)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))
