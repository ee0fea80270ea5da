"""Where the double attention block's time goes: mx.profiler per-operator totals (benchmarks/NOTES.md
has what was found) at a2_resnet50's sizes (batch 16, m = n = c/2; conv3: 512 x 28 x 28, conv4:
1024 x 14 x 14), and a2_resnet50 against resnet50 timed alternately in one process.

--profile (the default): the block's forward and forward+backward passes under `mx.profiler`
(profile_all, aggregate_stats, bulk execution off): convolutions and batch_dots against softmax,
reshapes, transposes, copies and oneDNN reorders; --network: the same for the whole a2_resnet50
forward+backward; --network-compare: a2_resnet50's forward and forward+backward passes alternating
with resnet50's, and their time ratio (--batch 1: where the batch-1 overhead goes).  Timings are
only comparable within one run: the machine is shared.  Nothing is written.  (The A/B variants of
the block's hybrid_forward that led to the fused phi/theta/rho projection are in the git history:
`git show 4f0fdf8:benchmarks/profile_block.py`.)
"""

import argparse
import os
import statistics
import sys
import tempfile

import _harness as h  # puts the project on sys.path

os.environ.update(h.worker_env(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))  # before MXNet
if "--network-compare" not in sys.argv:
    # one profiler entry per operator: no bulked segments ("Reshape,softmax,batch_dot")
    os.environ.setdefault("MXNET_EXEC_BULK_EXEC_INFERENCE", "0")
    os.environ.setdefault("MXNET_EXEC_BULK_EXEC_TRAIN", "0")

import mxnet as mx  # noqa: E402
from models import build  # noqa: E402

# mx.profiler's chrome trace (only the aggregate table is printed); kept out of the work tree
TRACE = os.path.join(tempfile.gettempdir(), "a2gluon-profile_block.json")
SIZES = {"conv3": (512, 28, 28), "conv4": (1024, 14, 14)}


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="conv4, batch 2, 2 passes")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--profile", action="store_true", help="mx.profiler tables of the block (default)")
    mode.add_argument("--network", action="store_true", help="mx.profiler table of --model")
    mode.add_argument("--network-compare", action="store_true", help="--model against --baseline")
    p.add_argument("--model", default="a2_resnet50")
    p.add_argument("--baseline", default="resnet50")
    p.add_argument("--sizes", type=h.names(SIZES), default=list(SIZES), help="conv3,conv4 (default)")
    p.add_argument("--batch", type=h.at_least(1), default=16)
    h.pass_options(p, repeat=10, warmup=2)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.batch, args.repeat, args.warmup = ["conv4"], 2, 2, 1
    print(f"load average before: {os.getloadavg()}", flush=True)
    if args.network_compare:
        nets = {name: build(name, args.batch) for name in (args.baseline, args.model)}
        for phase, label in (("forward", "forward"), ("train", "fwd+bwd")):
            times = h.interleave({n: runs[phase] for n, runs in nets.items()}, args.repeat, args.warmup)
            base = statistics.median(times[args.baseline])
            for name, ms in times.items():
                med = statistics.median(ms)
                print(
                    f"{label} batch {args.batch} {name:16s} {med:8.1f} ms ({med / base:.3f}x {args.baseline})"
                )
    elif args.network:
        title = f"{args.model} forward+backward, batch {args.batch}"
        profiled(build(args.model, args.batch)["train"], args.repeat, title)
    else:
        from a2gluon.nn import DoubleAttention

        for size in args.sizes:
            channels, *hw = SIZES[size]
            block = DoubleAttention(channels, reduction=2, prefix="a2_")
            runs = h.net_runs(block, (args.batch, channels, *hw), mx.init.Xavier(), input_grad=True)
            for phase, kind in (("forward", "forward"), ("train", "forward+backward")):
                title = f"block {size} {'x'.join(map(str, SIZES[size]))}, batch {args.batch}, {kind}"
                profiled(runs[phase], args.repeat, title)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
