"""The paper's image ResNets (26, 50 layers; 5x5 32-channel stem, stride on the 3x3) as a
classic symbol; attention='a2' or 'nonlocal' with blocks=['convS:U', ...] adds blocks."""

from ._trace import model_name, trace


def get_symbol(num_classes=1000, image_shape="3,224,224", num_layers=50, softmax_output=True, **kwargs):
    """Symbol of a2gluon's resnet26 / resnet50 (num_layers) for C x H x W images.  kwargs:
    attention, blocks, reduction, last_gamma (as get_model takes them)."""
    name = model_name("resnet", num_layers, (26, 50))
    return trace(name, num_classes, image_shape, 3, softmax_output, **kwargs)
