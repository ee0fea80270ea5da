"""Where the double attention block's time goes: mx.profiler per-operator totals, and A/B timings
of alternative operator choices that compute the same numbers.

Two things, both at a2_resnet50's sizes (batch 16, m = n = c/2):

* ``--profile``: runs the block (conv3: 512 x 28 x 28, conv4: 1024 x 14 x 14) forward and
  forward+backward, hybridized with static_alloc and static_shape, under ``mx.profiler``
  (profile_all, aggregate_stats) and prints the aggregate table (``mx.profiler.dumps()``), so that
  the time of the convolutions and batch_dots can be told from that of softmax, reshapes,
  transposes, copies and oneDNN reorders.  ``--network`` does the same for the whole
  a2_resnet50 (forward+backward, batch ``--batch``).
* default: times the variants of ``VARIANTS`` (subclasses of DoubleAttention that share its
  parameters and differ only in hybrid_forward) against each other in one process, alternating,
  after checking that each gives the same output and input gradient as the current
  implementation; prints each variant's median forward and forward+backward time and its ratio
  to ``current``.

Timings are only comparable within one run: the machine is shared.

Usage: python benchmarks/profile_block.py [--profile] [--network] [--batch 16] [--repeat 10]
       [--variants current,vt_softmax,...] [--sizes conv3,conv4]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_PROC_BIND", "true")
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
if "--profile" in sys.argv or "--network" in sys.argv:
    # one profiler entry per operator: no bulked segments ("Reshape,softmax,batch_dot")
    os.environ.setdefault("MXNET_EXEC_BULK_EXEC_INFERENCE", "0")
    os.environ.setdefault("MXNET_EXEC_BULK_EXEC_TRAIN", "0")

import mxnet as mx  # noqa: E402
from mxnet import autograd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2gluon.nn import DoubleAttention  # noqa: E402

# mx.profiler's chrome trace (only the aggregate table is printed); kept out of the work tree
TRACE = os.path.join(tempfile.gettempdir(), "a2gluon-profile_block.json")
SIZES = {"conv3": (512, 28, 28), "conv4": (1024, 14, 14)}


class Current(DoubleAttention):
    """The implementation as it is in a2gluon.nn (left association)."""


class AxisOneSoftmax(DoubleAttention):
    """The first implementation: softmax(V) over axis 1 of V reshaped to N x n x L."""

    def hybrid_forward(self, F, x):
        a_map = self.phi(x)
        a = a_map.reshape((0, 0, -1))
        b = self.theta(x).reshape((0, 0, -1))
        v = self.rho(x).reshape((0, 0, -1))
        maps = F.softmax(b, axis=2)
        vectors = F.softmax(v, axis=1)
        descriptors = F.batch_dot(a, maps, transpose_b=True)
        z = F.batch_dot(descriptors, vectors)
        z = F.reshape_like(z, a_map)
        return x + self.norm(self.extend(z))


class VTransposedSoftmax(DoubleAttention):
    """softmax(V) on the last axis of an explicit transpose V^T (N x L x n), then
    Z = G softmax(V^T)^T with transpose_b."""

    def hybrid_forward(self, F, x):
        a_map = self.phi(x)
        a = a_map.reshape((0, 0, -1))
        b = self.theta(x).reshape((0, 0, -1))
        v = self.rho(x).reshape((0, 0, -1))
        maps = F.softmax(b, axis=2)
        vectors_t = F.softmax(F.transpose(v, axes=(0, 2, 1)), axis=2)  # N x L x n
        descriptors = F.batch_dot(a, maps, transpose_b=True)
        z = F.batch_dot(descriptors, vectors_t, transpose_b=True)
        z = F.reshape_like(z, a_map)
        return x + self.norm(self.extend(z))


class VTransposed4D(DoubleAttention):
    """As VTransposedSoftmax, but V^T is one transpose of the 4-D convolution output
    (N x H x W x n, then a free reshape to N x L x n) instead of a reshape (a oneDNN reorder to
    the default layout) followed by a transpose (a second copy)."""

    def hybrid_forward(self, F, x):
        a_map = self.phi(x)
        a = a_map.reshape((0, 0, -1))
        b = self.theta(x).reshape((0, 0, -1))
        v_t = F.transpose(self.rho(x), axes=(0, 2, 3, 1)).reshape((0, -3, 0))  # N x L x n
        maps = F.softmax(b, axis=2)
        vectors_t = F.softmax(v_t, axis=2)
        descriptors = F.batch_dot(a, maps, transpose_b=True)
        z = F.batch_dot(descriptors, vectors_t, transpose_b=True)
        z = F.reshape_like(z, a_map)
        return x + self.norm(self.extend(z))


class FusedProjections(DoubleAttention):
    """phi, theta and rho as one 1x1 convolution over the concatenated weights (x read once,
    one larger oneDNN convolution), then split into A, B and V (the split replaces the
    reshapes' reorder copies).  m == n only."""

    def hybrid_forward(self, F, x):
        def get(param):
            return param.var() if F is mx.sym else param.data()

        convs = (self.phi, self.theta, self.rho)
        weight = F.concat(*[get(c.weight) for c in convs], dim=0)
        bias = F.concat(*[get(c.bias) for c in convs], dim=0)
        y = F.Convolution(x, weight, bias, kernel=(1, 1), num_filter=self.m + 2 * self.n)
        a_map, b, v = F.split(y, num_outputs=3, axis=1)
        a = a_map.reshape((0, 0, -1))
        b = b.reshape((0, 0, -1))
        v_t = F.transpose(v, axes=(0, 2, 3, 1)).reshape((0, -3, 0))
        maps = F.softmax(b, axis=2)
        vectors_t = F.softmax(v_t, axis=2)
        descriptors = F.batch_dot(a, maps, transpose_b=True)
        z = F.batch_dot(descriptors, vectors_t, transpose_b=True)
        z = F.reshape_like(z, a_map)
        return x + self.norm(self.extend(z))


class SwapOperands(DoubleAttention):
    """G^T = softmax(B) A^T (transpose the other operand), Z = (G^T)^T softmax(V)."""

    def hybrid_forward(self, F, x):
        a_map = self.phi(x)
        a = a_map.reshape((0, 0, -1))
        b = self.theta(x).reshape((0, 0, -1))
        v = self.rho(x).reshape((0, 0, -1))
        maps = F.softmax(b, axis=2)
        vectors = F.softmax(v, axis=1)
        descriptors_t = F.batch_dot(maps, a, transpose_b=True)  # N x n x m
        z = F.batch_dot(descriptors_t, vectors, transpose_a=True)
        z = F.reshape_like(z, a_map)
        return x + self.norm(self.extend(z))


class Softmax4D(DoubleAttention):
    """softmax(V) over channels on the 4-D convolution output (axis 1, before the reshape)."""

    def hybrid_forward(self, F, x):
        a_map = self.phi(x)
        a = a_map.reshape((0, 0, -1))
        b = self.theta(x).reshape((0, 0, -1))
        vectors = F.softmax(self.rho(x), axis=1).reshape((0, 0, -1))
        maps = F.softmax(b, axis=2)
        descriptors = F.batch_dot(a, maps, transpose_b=True)
        z = F.batch_dot(descriptors, vectors)
        z = F.reshape_like(z, a_map)
        return x + self.norm(self.extend(z))


VARIANTS = {
    "current": Current,
    "axis1": AxisOneSoftmax,
    "vt_softmax": VTransposedSoftmax,
    "vt4d": VTransposed4D,
    "fused": FusedProjections,
    "swap": SwapOperands,
    "softmax4d": Softmax4D,
}


def build(cls, channels, batch, hw):
    mx.random.seed(0)
    block = cls(channels, reduction=2, prefix="a2_")
    block.initialize(mx.init.Xavier())
    # a non-zero gamma so that the branch shows in the output and the gradient
    block.norm.gamma.set_data(mx.nd.ones(channels))
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(batch, channels) + hw)
    x.attach_grad()
    return block, x


def step(block, x, backward):
    if backward:
        with autograd.record():
            y = block(x)
        y.backward()
        x.grad.wait_to_read()
    else:
        block(x).wait_to_read()


def copy_params(src, dst):
    for (ks, ps), (kd, pd) in zip(
        sorted(src._collect_params_with_prefix().items()),
        sorted(dst._collect_params_with_prefix().items()),
    ):
        assert ks == kd
        pd.set_data(ps.data())


def compare(names, sizes, batch, repeat, warmup):
    for size in sizes:
        channels, h, w = SIZES[size]
        blocks = {}
        ref_out = ref_grad = None
        for name in names:
            block, x = build(VARIANTS[name], channels, batch, (h, w))
            if blocks:
                first_block, first_x = next(iter(blocks.values()))
                copy_params(first_block, block)
                x = first_x.copy()
                x.attach_grad()
            with autograd.record():
                y = block(x)
            y.backward()
            out, grad = y.asnumpy(), x.grad.asnumpy()
            if ref_out is None:
                ref_out, ref_grad = out, grad
            else:
                d_out = abs(out - ref_out).max() / (abs(ref_out).max() or 1)
                d_grad = abs(grad - ref_grad).max() / (abs(ref_grad).max() or 1)
                print(f"{size} {name}: rel diff output {d_out:.1e}, input grad {d_grad:.1e}")
            blocks[name] = (block, x)
        for backward in (False, True):
            times = {name: [] for name in names}
            for _ in range(warmup):
                for name in names:
                    step(*blocks[name], backward)
            for _ in range(repeat):
                for name in names:
                    start = time.perf_counter()
                    step(*blocks[name], backward)
                    times[name].append(time.perf_counter() - start)
            base = statistics.median(times[names[0]])
            kind = "fwd+bwd" if backward else "fwd"
            for name in names:
                med = statistics.median(times[name])
                print(f"{size} {kind:8s} {name:12s} {med * 1e3:8.1f} ms  ({med / base:.3f}x {names[0]})")


def profile_block(sizes, batch, repeat, name):
    for size in sizes:
        channels, h, w = SIZES[size]
        block, x = build(VARIANTS[name], channels, batch, (h, w))
        for backward in (False, True):
            for _ in range(2):
                step(block, x, backward)
            mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=TRACE)
            mx.profiler.set_state("run")
            for _ in range(repeat):
                step(block, x, backward)
            mx.nd.waitall()
            mx.profiler.set_state("stop")
            kind = "forward+backward" if backward else "forward"
            print(f"==== {name} block {size} {channels}x{h}x{w}, batch {batch}, {kind}, {repeat} passes")
            print(mx.profiler.dumps(reset=True))


def profile_network(batch, repeat, model="a2_resnet50"):
    from a2gluon.models import get_model

    mx.random.seed(0)
    net = get_model(model, classes=1000)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(batch, 3, 224, 224))
    for _ in range(2):
        with autograd.record():
            y = net(x)
        y.backward()
        mx.nd.waitall()
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=TRACE)
    mx.profiler.set_state("run")
    for _ in range(repeat):
        with autograd.record():
            y = net(x)
        y.backward()
        mx.nd.waitall()
    mx.profiler.set_state("stop")
    print(f"==== {model} forward+backward, batch {batch}, {repeat} passes")
    print(mx.profiler.dumps(reset=True))


def compare_network(names, batch, repeat, warmup, model="a2_resnet50", baseline="resnet50"):
    """a2_resnet50 with each block variant and resnet50, fwd+bwd, alternating in one process:
    the time ratio a2_resnet50 / resnet50 per variant."""
    from a2gluon.models import get_model

    original = DoubleAttention.hybrid_forward
    nets = {}
    x = mx.nd.random.normal(shape=(batch, 3, 224, 224))
    for name in [baseline] + names:
        if name != baseline:
            DoubleAttention.hybrid_forward = VARIANTS[name].__dict__.get("hybrid_forward", original)
        mx.random.seed(0)
        net = get_model(baseline if name == baseline else model, classes=1000)
        net.initialize(mx.init.Xavier())
        net.hybridize(static_alloc=True, static_shape=True)
        with autograd.record():
            y = net(x)  # builds the cached graph with the patched hybrid_forward
        y.backward()
        mx.nd.waitall()
        DoubleAttention.hybrid_forward = original
        nets[name] = net

    def train(net):
        with autograd.record():
            y = net(x)
        y.backward()
        mx.nd.waitall()

    times = {name: [] for name in nets}
    for _ in range(warmup):
        for net in nets.values():
            train(net)
    for _ in range(repeat):
        for name, net in nets.items():
            start = time.perf_counter()
            train(net)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[baseline])
    first = statistics.median(times[names[0]])
    for name in nets:
        med = statistics.median(times[name])
        label = baseline if name == baseline else f"{model}[{name}]"
        print(
            f"fwd+bwd batch {batch} {label:28s} {med * 1e3:8.1f} ms  ({med / base:.3f}x {baseline}, "
            f"{med / first:.3f}x {names[0]})"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true", help="mx.profiler table of one variant")
    parser.add_argument("--network", action="store_true", help="mx.profiler table of a2_resnet50")
    parser.add_argument("--network-compare", action="store_true", help="a2_resnet50 per variant vs resnet50")
    parser.add_argument("--model", default="a2_resnet50")
    parser.add_argument("--variant", default="current", choices=list(VARIANTS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--sizes", default="conv3,conv4")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    print(f"load average before: {os.getloadavg()}", flush=True)
    if args.network_compare:
        variants = [v for v in args.variants.split(",") if v]
        compare_network(variants, args.batch, args.repeat, args.warmup, args.model)
    elif args.network:
        profile_network(args.batch, args.repeat, args.model)
    elif args.profile:
        profile_block(sizes, args.batch, args.repeat, args.variant)
    else:
        compare([v for v in args.variants.split(",") if v], sizes, args.batch, args.repeat, args.warmup)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
