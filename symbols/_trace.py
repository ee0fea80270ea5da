"""Shared by the symbol modules: parse image_shape, build the registry model with its canonical
parameter names, trace it to a Symbol and check that it runs on image_shape."""

import mxnet as mx

from a2gluon.deploy.export import check_input_shape
from a2gluon.deploy.loading import build_model


def parse_image_shape(image_shape, axes):
    """'3,224,224' (or a tuple) -> (3, 224, 224), checked to have `axes` positive entries."""
    if isinstance(image_shape, str):
        try:
            shape = tuple(int(s) for s in image_shape.replace(" ", "").split(","))
        except ValueError:
            raise ValueError(f"image_shape must be comma-separated integers, got {image_shape!r}") from None
    else:
        shape = tuple(int(s) for s in image_shape)
    layout = "C,H,W" if axes == 3 else "C,T,H,W"
    if len(shape) != axes or min(shape) <= 0:
        raise ValueError(f"image_shape must be {axes} positive integers ({layout}), got {image_shape!r}")
    if shape[0] != 3:
        raise ValueError(f"image_shape must have 3 (RGB) channels first, got {image_shape!r}")
    return shape


def trace(model, num_classes, image_shape, axes, softmax_output=True, **kwargs):
    """The Symbol of registry model `model` (input 'data'), ending in SoftmaxOutput named
    'softmax' (label 'softmax_label') when softmax_output, else in the class scores."""
    shape = parse_image_shape(image_shape, axes)
    net = build_model(model, classes=num_classes, **kwargs)
    check_input_shape(net, shape, model)  # a ValueError saying what is wrong
    sym = net(mx.sym.var("data"))
    if softmax_output:
        sym = mx.sym.SoftmaxOutput(sym, name="softmax")
    return sym


def model_name(prefix, num_layers, choices):
    if num_layers not in choices:
        raise ValueError(f"num_layers must be one of {', '.join(map(str, choices))}, got {num_layers!r}")
    return f"{prefix}{num_layers}"
