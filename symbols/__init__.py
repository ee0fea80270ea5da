"""Classic MXNet symbol modules (get_symbol(num_classes, image_shape, ...)) for the Module API
and deployment tools, traced from the Gluon models of a2gluon.models (the network is defined
once).  Use: `from symbols import a2_resnet; sym = a2_resnet.get_symbol(1000, '3,224,224')`."""
