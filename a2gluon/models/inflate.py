"""Start a network from another one's weights: a video network from an image network's by
inflation (I3D, Carreira and Zisserman 2017: the paper's Kinetics recipe), or a network from a
checkpoint of the same architecture trained for other classes (the paper's UCF-101 transfer).

Parameters are matched by what they are, not by where they sit: the name each model gives a
parameter under its own prefix (``conv3_unit2_conv2_weight``, ``conv3_a22_phi_weight``,
``dense0_weight``), which is the same in a 2-D network and its 3-D counterpart, with or without
attention blocks in between.  So ResNet-50 inflates into A²-ResNet-50-3D (the paper: "ImageNet
pre-trained ResNet-50 + 5 new A² blocks") and A²-ResNet-50 into A²-ResNet-50-3D (blocks too).

Inflation of a 2-D kernel O x I x kh x kw into a 3-D one O x I x kt x kh x kw:

- ``mean`` (I3D's, mmaction2's and Gluon-CV's): the 2-D kernel / kt repeated kt times along
  time, so a clip of identical frames gives every 3-D convolution the 2-D response wherever its
  kt taps all see frames (not within kt//2 frames of the clip's ends, where the zero temporal
  padding takes a tap away);
- ``centre``: the 2-D kernel in the centre tap, zeros elsewhere: every frame is the 2-D network's
  frame exactly (also at the ends), and time enters only through training.

1x1 kernels become 1x1x1, the stem's 5x5 becomes kt x 5 x 5, a 3x3 becomes k x 3 x 3 (k = 1 or
3 as the unit has it); BatchNorm, the A² blocks (their 1x1 convolutions run as 2-D ones in every
network, see a2gluon.nn.DoubleAttention) and the classifier are taken as they are.  What the
source does not have (new blocks), what it has in another shape (a classifier for other
classes) and what the target does not use are reported, never silently dropped.
"""

from dataclasses import dataclass, field

import mxnet as mx
import numpy as np

MODES = ("mean", "centre")


def own_names(net):
    """{name under the network's prefix: Parameter}: 'conv1_weight' for 'resnet0_conv1_weight'."""
    prefix = net.prefix
    return {
        (name[len(prefix) :] if name.startswith(prefix) else name): param
        for name, param in net.collect_params().items()
    }


def own_arrays(net):
    """{name under the prefix: NDArray} of an initialised (loaded) network."""
    return {name: param.data(param.list_ctx()[0]) for name, param in own_names(net).items()}


def inflate_array(weight, shape, mode="mean"):
    """The 2-D kernel `weight` (O x I x kh x kw, numpy) as a 3-D kernel of `shape`
    (O x I x kt x kh x kw); ValueError when the spatial and channel axes differ."""
    if mode not in MODES:
        raise ValueError(f"inflation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if weight.ndim != 4 or len(shape) != 5 or tuple(weight.shape) != tuple(shape[:2] + shape[3:]):
        raise ValueError(f"a {tuple(weight.shape)} kernel does not inflate into {tuple(shape)}")
    kt = shape[2]
    if mode == "mean":
        return np.repeat(weight[:, :, None] / kt, kt, axis=2)
    out = np.zeros(shape, dtype=weight.dtype)
    out[:, :, kt // 2] = weight
    return out


@dataclass
class Transfer:
    """What `transfer` did, by parameter name (under the target's prefix)."""

    copied: list = field(default_factory=list)  # taken as they are
    inflated: list = field(default_factory=list)  # 2-D kernels made 3-D
    new: list = field(default_factory=list)  # not in the source: initialised as usual
    reshaped: list = field(default_factory=list)  # (name, source shape, target shape): initialised
    unused: list = field(default_factory=list)  # in the source, not in the target

    @property
    def loaded(self):
        return len(self.copied) + len(self.inflated)

    def classifier_reset(self):
        """(source classes, target classes) when only the classifier differed in shape, else None."""
        names = {n for n, _, _ in self.reshaped}
        if not names or not all(n.startswith("dense") for n in names):
            return None
        (_, src, dst) = next(r for r in self.reshaped if r[0].endswith("weight"))
        return src[0], dst[0]

    def lines(self, what="the checkpoint"):
        """The report, one line per kind of mismatch (every name listed)."""
        out = [
            f"{self.loaded} parameters from {what} ({len(self.inflated)} kernels inflated, "
            f"{len(self.copied)} taken as they are)"
        ]
        if self.new:
            out.append(f"{len(self.new)} not in {what}, initialised as usual: {', '.join(self.new)}")
        if self.reshaped:
            shapes = ", ".join(f"{n} {tuple(s)} -> {tuple(t)}" for n, s, t in self.reshaped)
            out.append(f"{len(self.reshaped)} of another shape in {what}, initialised as usual: {shapes}")
        if self.unused:
            out.append(f"{len(self.unused)} of {what} not used: {', '.join(self.unused)}")
        return out


def transfer(target, source, mode="mean"):
    """Set the initialised network `target`'s parameters from `source` ({name under the
    prefix: NDArray or numpy array}, see own_arrays): equal shapes copied, 2-D kernels inflated
    into 3-D ones (`mode`), the rest left as initialised.  Returns a Transfer.  Call it before
    the network's first forward pass (oneDNN may hold a 3-D weight in a layout set_data cannot
    write, see docs)."""
    if mode not in MODES:
        raise ValueError(f"inflation mode must be one of {', '.join(MODES)}, got {mode!r}")
    report = Transfer()
    params = own_names(target)
    for name, param in params.items():
        if name not in source:
            report.new.append(name)
            continue
        value = source[name]
        value = value.asnumpy() if isinstance(value, mx.nd.NDArray) else np.asarray(value)
        shape = tuple(param.shape)
        if tuple(value.shape) == shape:
            report.copied.append(name)
        elif value.ndim == 4 and len(shape) == 5 and tuple(value.shape) == shape[:2] + shape[3:]:
            value = inflate_array(value, shape, mode)
            report.inflated.append(name)
        else:
            report.reshaped.append((name, tuple(value.shape), shape))
            continue
        param.set_data(mx.nd.array(value, dtype=param.dtype))
    report.unused = sorted(set(source) - set(params))
    return report
