"""Where the double attention block's time goes: mx.profiler per-operator totals, and A/B timings
of alternative operator choices that compute the same numbers (benchmarks/NOTES.md has what was
found), at a2_resnet50's sizes (batch 16, m = n = c/2; conv3: 512 x 28 x 28, conv4: 1024 x 14 x 14).

--profile: the block's forward and forward+backward passes under `mx.profiler` (profile_all,
aggregate_stats, bulk execution off): convolutions and batch_dots against softmax, reshapes,
transposes, copies and oneDNN reorders; --network: the same for the whole a2_resnet50.  By default
the variants of VARIANTS (subclasses of DoubleAttention differing only in hybrid_forward) are timed
alternately in one process after checking that each gives the output and input gradient of the
first; --network-compare: a2_resnet50 built with each variant, against resnet50.  Timings are only
comparable within one run: the machine is shared.  Nothing is written.

Usage: python benchmarks/profile_block.py [--quick] [--profile] [--network] [--network-compare]
       [--batch 16] [--repeat 10] [--variants current,vt_softmax,...] [--sizes conv3,conv4]
"""

import argparse
import os
import statistics
import sys
import tempfile

import _harness as h  # puts the project on sys.path

os.environ.update(h.worker_env(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))  # before MXNet
if "--profile" in sys.argv or "--network" in sys.argv:
    # one profiler entry per operator: no bulked segments ("Reshape,softmax,batch_dot")
    os.environ.setdefault("MXNET_EXEC_BULK_EXEC_INFERENCE", "0")
    os.environ.setdefault("MXNET_EXEC_BULK_EXEC_TRAIN", "0")

import mxnet as mx  # noqa: E402
from mxnet import autograd  # noqa: E402

from a2gluon.models import get_model  # noqa: E402
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
    """Block `cls` at `channels` x `hw`, with a non-zero gamma so that the branch shows in the
    output and the gradient, and an input that records its gradient."""
    mx.random.seed(0)
    block = cls(channels, reduction=2, prefix="a2_")
    block.initialize(mx.init.Xavier())
    block.norm.gamma.set_data(mx.nd.ones(channels))
    block.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(batch, channels, *hw))
    x.attach_grad()
    return block, x


def step(net, x, backward):
    """One pass of `net` on `x`: a forward one, or forward+backward; waits for the results."""
    if backward:
        with autograd.record():
            y = net(x)
        y.backward()
    else:
        y = net(x)
    mx.nd.waitall()


def report(times, label, unit=""):
    """Each entry's median time and its ratio to the first entry's."""
    first = statistics.median(next(iter(times.values())))
    for name, ms in times.items():
        med = statistics.median(ms)
        print(f"{label} {name:28s} {med:8.1f} ms  ({med / first:.3f}x {next(iter(times))}){unit}")


def compare(names, sizes, batch, repeat, warmup):
    """The variants' forward and forward+backward times at each size, alternating in one process."""
    for size in sizes:
        channels, hgt, wid = SIZES[size]
        blocks, ref = {}, None
        for name in names:
            block, x = build(VARIANTS[name], channels, batch, (hgt, wid))
            if blocks:  # the first variant's parameters and input
                first_block, first_x = next(iter(blocks.values()))
                src = first_block.collect_params()
                for key, param in block.collect_params().items():
                    param.set_data(src[key].data())
                x = first_x.copy()
                x.attach_grad()
            with autograd.record():
                y = block(x)
            y.backward()
            out, grad = y.asnumpy(), x.grad.asnumpy()
            if ref is None:
                ref = out, grad
            else:
                d_out = abs(out - ref[0]).max() / (abs(ref[0]).max() or 1)
                d_grad = abs(grad - ref[1]).max() / (abs(ref[1]).max() or 1)
                print(f"{size} {name}: rel diff output {d_out:.1e}, input grad {d_grad:.1e}")
            blocks[name] = (block, x)
        for backward in (False, True):
            runs = {name: lambda b=b, x=x, bw=backward: step(b, x, bw) for name, (b, x) in blocks.items()}
            report(h.interleave(runs, repeat, warmup), f"{size} {'fwd+bwd' if backward else 'fwd':8s}")


def profiled(run, repeat, title):
    """mx.profiler's aggregate table of `repeat` calls of `run` (after two untimed ones)."""
    for _ in range(2):
        run()
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=TRACE)
    mx.profiler.set_state("run")
    for _ in range(repeat):
        run()
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    print(f"==== {title}, {repeat} passes")
    print(mx.profiler.dumps(reset=True))


def network(model, batch):
    """Model `model` hybridized, and a random ImageNet-sized batch."""
    mx.random.seed(0)
    net = get_model(model, classes=1000)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    return net, mx.nd.random.normal(shape=(batch, 3, 224, 224))


def compare_network(names, batch, repeat, warmup, model, baseline="resnet50"):
    """`model` built with each block variant and `baseline`, fwd+bwd, alternating in one process."""
    original, runs = DoubleAttention.hybrid_forward, {}
    for name in [baseline, *names]:
        if name != baseline:
            DoubleAttention.hybrid_forward = VARIANTS[name].__dict__.get("hybrid_forward", original)
        net, x = network(baseline if name == baseline else model, batch)
        step(net, x, True)  # builds the cached graph with the patched hybrid_forward
        DoubleAttention.hybrid_forward = original
        runs[name if name == baseline else f"{model}[{name}]"] = lambda net=net, x=x: step(net, x, True)
    report(h.interleave(runs, repeat, warmup), f"fwd+bwd batch {batch}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="conv4, batch 2, 2 passes, two variants")
    parser.add_argument("--profile", action="store_true", help="mx.profiler table of one variant")
    parser.add_argument("--network", action="store_true", help="mx.profiler table of a2_resnet50")
    parser.add_argument("--network-compare", action="store_true", help="a2_resnet50 per variant vs resnet50")
    parser.add_argument("--model", default="a2_resnet50")
    parser.add_argument("--variant", default="current", choices=list(VARIANTS))
    parser.add_argument("--variants", type=h.names(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--sizes", type=h.names(SIZES), default=list(SIZES))
    parser.add_argument("--batch", type=h.at_least(1), default=16)
    parser.add_argument("--repeat", type=h.at_least(1), default=10)
    parser.add_argument("--warmup", type=h.at_least(0), default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batch, args.repeat, args.warmup = ["conv4"], 2, 2, 1
        args.variants = args.variants if len(args.variants) < len(VARIANTS) else ["current", "vt4d"]
    print(f"load average before: {os.getloadavg()}", flush=True)
    if args.network_compare:
        compare_network(args.variants, args.batch, args.repeat, args.warmup, args.model)
    elif args.network:
        net, x = network(args.model, args.batch)
        profiled(
            lambda: step(net, x, True), args.repeat, f"{args.model} forward+backward, batch {args.batch}"
        )
    elif args.profile:
        for size in args.sizes:
            block, x = build(VARIANTS[args.variant], SIZES[size][0], args.batch, SIZES[size][1:])
            for backward in (False, True):
                kind = "forward+backward" if backward else "forward"
                title = f"{args.variant} block {size} {'x'.join(map(str, SIZES[size]))}, batch {args.batch}"
                profiled(lambda: step(block, x, backward), args.repeat, f"{title}, {kind}")  # noqa: B023
    else:
        compare(args.variants, args.sizes, args.batch, args.repeat, args.warmup)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
