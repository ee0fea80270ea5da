"""A^2-Nets image ResNets (a2_resnet26, a2_resnet50: the paper's ImageNet model) as a classic
symbol."""

from ._trace import model_name, trace


def get_symbol(num_classes=1000, image_shape="3,224,224", num_layers=50, softmax_output=True, **kwargs):
    """Symbol of a2gluon's a2_resnet26 / a2_resnet50 (num_layers) for C x H x W images.  kwargs:
    blocks, reduction, last_gamma (as get_model takes them)."""
    name = model_name("a2_resnet", num_layers, (26, 50))
    return trace(name, num_classes, image_shape, 3, softmax_output, **kwargs)
