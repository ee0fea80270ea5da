"""A^2-Nets video ResNets (a2_resnet26_3d, a2_resnet50_3d: the Kinetics model) as a classic
symbol, input C x T x H x W clips."""

from ._trace import model_name, trace


def get_symbol(num_classes=1000, image_shape="3,16,112,112", num_layers=26, softmax_output=True, **kwargs):
    """Symbol of a2gluon's a2_resnet26_3d / a2_resnet50_3d (num_layers); use
    image_shape='3,8,224,224' for the 50-layer network as the paper does."""
    name = model_name("a2_resnet", num_layers, (26, 50)) + "_3d"
    return trace(name, num_classes, image_shape, 4, softmax_output, **kwargs)
