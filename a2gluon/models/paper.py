"""The paper's networks: the image ResNet-50 (with and without its five A^2 blocks), 2-D
ResNet-26, and the video ResNet-26/29/50 of its Table 1."""

from .registry import CLIP_8x224, CLIP_16x112, register
from .resnet import ResNet, Stage, Stem

# --- image networks --------------------------------------------------------------------------

RESNET50_STAGES = (
    Stage("conv2", 3, 64, 256, stride=1),
    Stage("conv3", 4, 128, 512),
    Stage("conv4", 6, 256, 1024),
    Stage("conv5", 3, 512, 2048),
)
# Where the paper's five image A^2 blocks go: after units 2 and 4 of conv3 and 2, 4, 6 of conv4.
A2_RESNET50_BLOCKS = ("conv3:2", "conv3:4", "conv4:2", "conv4:4", "conv4:6")
A2_RESNET50_REDUCTION = 2

RESNET26_STAGES = (
    Stage("conv2", 2, 32, 128, stride=1),
    Stage("conv3", 2, 64, 256),
    Stage("conv4", 2, 128, 512),
    Stage("conv5", 2, 256, 1024),
)
# ResNet-26/29 stages have two or three units: one block after the second unit of conv3 and of
# conv4 (the paper's ablation place, "after the second residual unit" of a stage).
SMALL_BLOCKS = ("conv3:2", "conv4:2")


@register
def resnet50(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """The paper's image ResNet-50: its video ResNet-50 without the temporal dimension.

    Stem: 5x5 convolution, 32 channels, stride 2, then 3x3 max pooling, stride 2 (56x56 at
    224 input).  Bottleneck units 3-4-6-3 (conv2..conv5) with the stride on the 3x3
    convolution (as ResNet v1b / v1.5).  25.5 M parameters, 3.98 G multiply-adds at 224x224.
    With attention and no blocks given, blocks go where a2_resnet50 puts them.
    """
    return ResNet(
        Stem(32, kernel=5, maxpool=True),
        RESNET50_STAGES,
        dims=2,
        classes=classes,
        attention=attention,
        blocks=blocks,
        default_blocks=A2_RESNET50_BLOCKS,
        reduction=reduction,
        **kwargs,
    )


@register
def a2_resnet50(
    classes=1000,
    attention="a2",
    blocks=A2_RESNET50_BLOCKS,
    reduction=A2_RESNET50_REDUCTION,
    **kwargs,
):
    """ResNet-50 with five A^2 blocks at conv3 and conv4, the paper's ImageNet model
    ("only costs 6.5 GFLOPs and 33.0 M parameters").

    The paper does not give the blocks' channel reduction or the units they follow; this
    configuration is the one that reproduces both of its figures (see the profiler tests):

    * m = n = c/2 (``reduction=2``).  The three reducing 1x1 convolutions and the extending
      one hold about 2c^2 parameters per block: two blocks at conv3 (c=512) and three at
      conv4 (c=1024) add 7.35 M to the backbone's 25.5 M, giving 32.9 M (paper: 33.0 M).
      With m = n = c/4 the total would be 29.2 M.
    * Placed after residual units 2 and 4 of conv3 and 2, 4 and 6 of conv4, as the first
      author's later Global Reasoning networks place their five units.  At 28x28 and 14x14
      each block costs about 0.51 G multiply-adds (0.41 G in its 1x1 convolutions, 2mnL =
      0.10 G in the two batched products), 2.57 G in all: 3.98 G + 2.57 G = 6.55 G
      (paper: 6.5 G).
    * Each block ends in a BatchNorm with gamma initialised to zero, so that it starts as the
      identity (as Global Reasoning and Gluon-CV's non-local block do).
    """
    return resnet50(classes=classes, attention=attention, blocks=blocks, reduction=reduction, **kwargs)


@register
def resnet26(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """2-D version of the paper's ResNet-26 (Table 1 without time): 5x5 stem, 16 channels,
    stride 2, no max pooling; two bottleneck units per stage, 128-256-512-1024 channels.
    Small enough for CPU experiments; 112x112 is its native input (7x7 before pooling)."""
    return ResNet(
        Stem(16, kernel=5, maxpool=False),
        RESNET26_STAGES,
        dims=2,
        classes=classes,
        attention=attention,
        blocks=blocks,
        default_blocks=SMALL_BLOCKS,
        reduction=reduction,
        **kwargs,
    )


@register
def a2_resnet26(classes=1000, attention="a2", blocks=SMALL_BLOCKS, reduction=4, **kwargs):
    """resnet26 with an A^2 block after the second unit of conv3 and of conv4 (m = n = c/4,
    the paper's ablation setting)."""
    return resnet26(classes=classes, attention=attention, blocks=blocks, reduction=reduction, **kwargs)


# --- video networks (input N x 3 x T x H x W) ---------------------------------------------------
#
# Readings where the paper is ambiguous:
# * ResNet-26/29 halve time (16 -> 8 frames) in conv2: the first unit's 3x3x3 convolution and its
#   shortcut have stride (2, 1, 1).  Every unit's middle convolution is 3x3x3.
# * ResNet-50 halves time (8 -> 4) together with space in conv3: the first unit's k x 3 x 3
#   convolution (k = 3 there) and its shortcut have stride (2, 2, 2).
# * ResNet-50's k lists: conv2 3 for all units (Table 1 prints 3x3x3); conv3 [3, 1, 3, 1] (the
#   paper prints three entries for four units; this is the Non-local paper's I3D alternation);
#   conv4 [3, 1, 3, 1, 3, 1]; conv5 [1, 3, 1].

RESNET26_3D_STAGES = (
    Stage("conv2", 2, 32, 128, stride=1, temporal_stride=2),
    Stage("conv3", 2, 64, 256),
    Stage("conv4", 2, 128, 512),
    Stage("conv5", 2, 256, 1024),
)
RESNET29_3D_STAGES = RESNET26_3D_STAGES[:2] + (Stage("conv4", 3, 128, 512),) + RESNET26_3D_STAGES[3:]
RESNET50_3D_STAGES = (
    Stage("conv2", 3, 64, 256, stride=1, temporal_kernels=(3, 3, 3)),
    Stage("conv3", 4, 128, 512, temporal_stride=2, temporal_kernels=(3, 1, 3, 1)),
    Stage("conv4", 6, 256, 1024, temporal_kernels=(3, 1, 3, 1, 3, 1)),
    Stage("conv5", 3, 512, 2048, temporal_kernels=(1, 3, 1)),
)


@register(input_shape=CLIP_16x112)
def resnet26_3d(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """The paper's video ResNet-26 (Table 1), input 3 x 16 x 112 x 112: stem 3x5x5, 16
    channels, stride (1,2,2); two units per stage; 8 x 7 x 7 before pooling."""
    return ResNet(
        Stem(16, kernel=5, temporal_kernel=3, maxpool=False),
        RESNET26_3D_STAGES,
        dims=3,
        classes=classes,
        attention=attention,
        blocks=blocks,
        default_blocks=SMALL_BLOCKS,
        reduction=reduction,
        **kwargs,
    )


@register(input_shape=CLIP_16x112)
def a2_resnet26_3d(classes=1000, attention="a2", blocks=SMALL_BLOCKS, reduction=4, **kwargs):
    """resnet26_3d with A^2 blocks after the second unit of conv3 and conv4 (m = n = c/4)."""
    return resnet26_3d(classes=classes, attention=attention, blocks=blocks, reduction=reduction, **kwargs)


@register(input_shape=CLIP_16x112)
def resnet29_3d(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """The paper's video ResNet-29: ResNet-26 with three units in conv4."""
    return ResNet(
        Stem(16, kernel=5, temporal_kernel=3, maxpool=False),
        RESNET29_3D_STAGES,
        dims=3,
        classes=classes,
        attention=attention,
        blocks=blocks,
        default_blocks=SMALL_BLOCKS,
        reduction=reduction,
        **kwargs,
    )


@register(input_shape=CLIP_8x224)
def resnet50_3d(classes=1000, attention=None, blocks=None, reduction=4, **kwargs):
    """The paper's video ResNet-50, input 3 x 8 x 224 x 224: stem 3x5x5, 32 channels, stride
    (1,2,2), max pooling 1x3x3 stride (1,2,2); units 3-4-6-3; 4 x 7 x 7 before pooling."""
    return ResNet(
        Stem(32, kernel=5, temporal_kernel=3, maxpool=True),
        RESNET50_3D_STAGES,
        dims=3,
        classes=classes,
        attention=attention,
        blocks=blocks,
        default_blocks=A2_RESNET50_BLOCKS,
        reduction=reduction,
        **kwargs,
    )


@register(input_shape=CLIP_8x224)
def a2_resnet50_3d(
    classes=1000,
    attention="a2",
    blocks=A2_RESNET50_BLOCKS,
    reduction=A2_RESNET50_REDUCTION,
    **kwargs,
):
    """resnet50_3d with five A^2 blocks as in the paper's Kinetics model, placed and sized as
    in a2_resnet50 (its 2-D weights inflate into this network)."""
    return resnet50_3d(classes=classes, attention=attention, blocks=blocks, reduction=reduction, **kwargs)
