"""Attention blocks: the double attention (A^2) block and the Non-local baseline."""

from .double_attention import ASSOCIATIONS, DoubleAttention
from .non_local import NonLocal

__all__ = ["ASSOCIATIONS", "ATTENTIONS", "DoubleAttention", "NonLocal", "make_attention"]

ATTENTIONS = {"a2": DoubleAttention, "nonlocal": NonLocal}


def make_attention(kind, in_channels, reduction=4, dims=2, **kwargs):
    """Build the attention block named `kind` ('a2' or 'nonlocal') for `in_channels` channels."""
    if kind not in ATTENTIONS:
        raise ValueError(f"attention must be None, 'a2' or 'nonlocal', got {kind!r}")
    return ATTENTIONS[kind](in_channels, reduction=reduction, dims=dims, **kwargs)
