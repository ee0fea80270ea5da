"""a2gluon: A^2-Nets (Double Attention Networks, Chen et al., NeurIPS 2018) in MXNet/Gluon."""

__version__ = "0.2.0"
