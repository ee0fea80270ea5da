"""Gradient accumulation: the same global batch on fewer devices.

``GradientAccumulator(params, trainer, every=N)`` sums the gradients of N batches (MXNet
``grad_req='add'``) and makes one optimizer update of their mean, so that 8 GPUs x 32 images x 8
batches update as 2,048 images at once would.  BatchNorm is the exception: its statistics (and the
normalisation of each forward pass) stay those of each device's own batch, as with any data
parallelism; a network without BatchNorm gets the large batch's update up to float rounding.
"""


class GradientAccumulator:
    """Call ``backward`` as usual, then ``done(examples, last)`` after every batch: it updates
    (``trainer.step`` over all the examples since the last update) after `every` batches, or at
    ``last`` (the end of an epoch), and returns whether it did."""

    def __init__(self, params, trainer, every=1):
        if every < 1:
            raise ValueError(f"--accumulate must be at least 1, got {every}")
        self.trainer, self.every = trainer, every
        self.params = [p for p in params.values() if p.grad_req != "null"]
        self.batches = self.examples = 0
        if every > 1:
            for param in self.params:
                param.grad_req = "add"
                param.zero_grad()

    @property
    def at_boundary(self):
        """True between updates (no gradient is waiting): where a run may stop and save."""
        return self.batches == 0

    def done(self, examples, last=False):
        self.batches += 1
        self.examples += examples
        if self.batches < self.every and not last:
            return False
        self.trainer.step(self.examples)  # the mean over every example since the last update
        if self.every > 1:
            for param in self.params:
                param.zero_grad()
        self.batches = self.examples = 0
        return True
