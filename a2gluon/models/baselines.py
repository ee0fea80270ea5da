"""Gluon-CV baselines for the paper's comparison rows (ResNet-50/152 v1b, SE-ResNet-50), built
with pretrained=False, with optional attention blocks inserted after chosen units."""

from mxnet.gluon import nn

from ..nn import make_attention
from .registry import register
from .resnet import Stage, check_attention

# Stage names and channels of Gluon-CV's bottleneck ResNets (units per stage by depth).
_UNITS = {50: (3, 4, 6, 3), 152: (3, 8, 36, 3)}
_CHANNELS = (256, 512, 1024, 2048)
_DEFAULT_BLOCKS = ("conv3:2", "conv3:4", "conv4:2", "conv4:4", "conv4:6")


def _stages(depth):
    return [Stage(f"conv{i + 2}", u, c // 4, c) for i, (u, c) in enumerate(zip(_UNITS[depth], _CHANNELS))]


def _with_attention(stage_seq, stage_index, positions, attention, reduction):
    """A new HybridSequential holding `stage_seq`'s units with attention blocks after the chosen ones."""
    name = f"conv{stage_index + 2}"
    new = nn.HybridSequential(prefix=stage_seq.prefix)
    for u, unit in enumerate(stage_seq, start=1):
        new.add(unit)
        if (name, u) in positions:
            new.add(
                make_attention(
                    attention,
                    _CHANNELS[stage_index],
                    reduction=reduction,
                    dims=2,
                    prefix=f"{stage_seq.prefix}{attention}{u}_",
                )
            )
    return new


def _gluoncv(name, depth, classes, attention, blocks, reduction, **kwargs):
    from gluoncv.model_zoo import get_model as gcv_get_model

    positions = check_attention(attention, blocks, _DEFAULT_BLOCKS, _stages(depth))
    net = gcv_get_model(name, pretrained=False, classes=classes, **kwargs)
    if positions:
        stages = {s for s, _ in positions}
        if hasattr(net, "layer1"):  # v1b: layer1..layer4 are conv2..conv5
            for i in range(4):
                if f"conv{i + 2}" in stages:
                    attr = f"layer{i + 1}"
                    setattr(
                        net,
                        attr,
                        _with_attention(getattr(net, attr), i, positions, attention, reduction),
                    )
        else:  # v1: features = [conv, bn, relu, pool, stage1..stage4, pool]
            for i in range(4):
                if f"conv{i + 2}" in stages:
                    net.features.register_child(
                        _with_attention(net.features[4 + i], i, positions, attention, reduction),
                        str(4 + i),
                    )
    net.attention, net.blocks = attention, [f"{s}:{u}" for s, u in positions]
    return net


@register
def resnet50_v1b(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """Gluon-CV ResNet-50 v1b (7x7 stem, stride on the 3x3 convolution), randomly initialised."""
    return _gluoncv("resnet50_v1b", 50, classes, attention, blocks, reduction, **kwargs)


@register
def resnet152_v1b(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """Gluon-CV ResNet-152 v1b, randomly initialised (the paper's ResNet-152 row)."""
    return _gluoncv("resnet152_v1b", 152, classes, attention, blocks, reduction, **kwargs)


@register
def se_resnet50_v1(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """Gluon-CV SE-ResNet-50 (v1), the paper's SE-ResNet-50 row; Gluon-CV has no weights for it."""
    return _gluoncv("se_resnet50_v1", 50, classes, attention, blocks, reduction, **kwargs)
