"""One registry of model constructors, each with a spec of what it takes: get_model(name,
classes=1000, **kwargs), model_spec(name), list_models()."""

from dataclasses import dataclass

from ..nn import ATTENTIONS

# The paper's inputs, without the batch axis: C x H x W images, C x T x H x W clips.
IMAGE_224 = (3, 224, 224)
CLIP_16x112 = (3, 16, 112, 112)
CLIP_8x224 = (3, 8, 224, 224)
# What `attention=` accepts in the command lines: a block kind, or "none" for no blocks.
ATTENTION_CHOICES = tuple(ATTENTIONS) + ("none",)

_MODELS = {}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its constructor and the input it takes by default (the paper's)."""

    name: str
    build: object  # fn(classes=..., **kwargs) -> HybridBlock
    input_shape: tuple  # C x H x W (image) or C x T x H x W (video), without the batch axis

    @property
    def layout(self):
        """'image' (N x C x H x W) or 'video' (N x C x T x H x W)."""
        return "video" if len(self.input_shape) == 4 else "image"

    @property
    def is_video(self):
        return self.layout == "video"


def register(fn=None, *, input_shape=IMAGE_224):
    """Decorator: make `fn` available as get_model(fn.__name__), taking `input_shape` inputs by
    default.  Use as ``@register`` (images of 224) or ``@register(input_shape=CLIP_16x112)``."""

    def add(fn):
        if fn.__name__ in _MODELS:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        _MODELS[fn.__name__] = ModelSpec(fn.__name__, fn, tuple(input_shape))
        return fn

    return add(fn) if fn is not None else add


def list_models():
    """Names of every model get_model knows, sorted."""
    return sorted(_MODELS)


def model_spec(name):
    """The ModelSpec of `name`; ValueError naming the known models for an unknown one."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def default_input_shape(name):
    """The paper's input for model `name` (C x H x W or C x T x H x W)."""
    return model_spec(name).input_shape


def get_model(name, classes=1000, **kwargs):
    """Build model `name` for `classes` classes.  Every model accepts attention=None|'a2'|'nonlocal',
    blocks=['convS:U', ...] and reduction=R, plus its own keyword options."""
    return model_spec(name).build(classes=classes, **kwargs)


def model_options(attention=None, blocks=None, reduction=None, last_gamma=False):
    """get_model keyword arguments from command-line values: attention 'a2' / 'nonlocal' / 'none'
    (no attention blocks, also on models built with blocks by default) / None (the model's
    own), blocks 'conv3:2,conv4:2', reduction R; unset values are left to the model."""
    kwargs = {}
    if attention == "none":
        kwargs.update(attention=None, blocks=None)
    elif attention:
        kwargs["attention"] = attention
    if blocks:
        kwargs["blocks"] = blocks
    if reduction:
        kwargs["reduction"] = reduction
    if last_gamma:
        kwargs["last_gamma"] = True
    return kwargs
