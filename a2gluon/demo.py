"""The end-to-end demo (`make demo`).  For now it builds the paper's ImageNet model, checks its
cost against the paper and runs it on one image-sized batch; training on bundled data comes next."""

import sys
import time

import mxnet as mx

from .models import get_model
from .profile import profile_model

PAPER = {"a2_resnet50": (33.0e6, 6.5e9)}


def main():
    print("a2gluon demo: the paper's ImageNet model, A²-Net = ResNet-50 + 5 double attention blocks\n")
    for name in ("resnet50", "a2_resnet50"):
        prof = profile_model(name)
        line = f"{name:<12} {prof.params / 1e6:6.2f} M parameters  {prof.macs / 1e9:5.2f} G multiply-adds"
        if name in PAPER:
            params, macs = PAPER[name]
            line += f"   (paper: {params / 1e6:.1f} M, {macs / 1e9:.1f} G)"
        print(line)
    net = get_model("a2_resnet50")
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(1, 3, 224, 224))
    net(x).wait_to_read()  # build the graph
    start = time.perf_counter()
    probs = mx.nd.softmax(net(x))
    probs.wait_to_read()
    elapsed = time.perf_counter() - start
    print(f"\nforward pass of a2_resnet50 on one 224×224 image: {elapsed * 1000:.0f} ms on {mx.cpu()}")
    print(f"output: {probs.shape[1]} class probabilities summing to {probs.sum().asscalar():.4f}")
    print("\nNext: `python -m a2gluon.profile a2_resnet50 --per-layer` for the cost of every layer.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
