"""A model's exponential moving average (``--model-ema``, as timm's ModelEmaV2): after every
update, ema = decay x ema + (1 - decay) x weights, over every parameter and BatchNorm statistic.
It is evaluated beside the model, saved as ``STEM-ema.params`` (Gluon ``save_parameters``
layout, so ``net.load_parameters`` reads it) and exported with ``a2gluon export --ema``."""

import mxnet as mx


def ema_path(stem):
    """Where the EMA weights of checkpoint `stem` live."""
    return stem + "-ema.params"


class ModelEMA:
    """The moving average of `net`'s values on its first device (`ctx`)."""

    def __init__(self, net, decay=0.9998, ctx=None):
        if not 0 < decay < 1:
            raise ValueError(f"--model-ema-decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.ctx = ctx or mx.cpu()
        self._params = net._collect_params_with_prefix()
        self.values = {name: p.data(self.ctx).copy() for name, p in self._params.items()}

    def update(self):
        """Move the average towards the network's current values."""
        for name, param in self._params.items():
            avg = self.values[name]
            avg[:] = self.decay * avg + (1 - self.decay) * param.data(self.ctx)

    def load(self, path):
        """The average saved at `path` (by ``save``)."""
        saved = mx.nd.load(path)
        missing = sorted(set(self.values) - set(saved))
        if missing:
            raise ValueError(f"{path} has no {missing[0]}: not the EMA of this network")
        for name in self.values:
            self.values[name] = saved[name].as_in_context(self.ctx)

    def save(self, path):
        mx.nd.save(path, self.values)

    def copy_to(self, net):
        """Put the average into `net` (a second network of the same architecture)."""
        for name, param in net._collect_params_with_prefix().items():
            param.set_data(self.values[name])
