"""One registry of model constructors: get_model(name, classes=1000, **kwargs), list_models()."""

_MODELS = {}


def register(fn):
    """Decorator: make `fn` available as get_model(fn.__name__)."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models():
    """Names of every model get_model knows, sorted."""
    return sorted(_MODELS)


def get_model(name, classes=1000, **kwargs):
    """Build model `name` for `classes` classes.  Every model accepts attention=None|'a2'|'nonlocal',
    blocks=['convS:U', ...] and reduction=R, plus its own keyword options."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name](classes=classes, **kwargs)
