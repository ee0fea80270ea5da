"""The paper's video ResNets (26, 29, 50 layers; Table 1) as a classic symbol, input
C x T x H x W clips; attention='a2' or 'nonlocal' with blocks=['convS:U', ...] adds blocks."""

from ._trace import model_name, trace


def get_symbol(num_classes=1000, image_shape="3,16,112,112", num_layers=26, softmax_output=True, **kwargs):
    """Symbol of a2gluon's resnet26_3d / resnet29_3d / resnet50_3d (num_layers).  The paper
    feeds 16x112x112 clips to the 26/29-layer networks and 8x224x224 to the 50-layer one."""
    name = model_name("resnet", num_layers, (26, 29, 50)) + "_3d"
    return trace(name, num_classes, image_shape, 4, softmax_output, **kwargs)
