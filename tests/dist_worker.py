"""One process of the distributed tests: trains a tiny net for an epoch, saves its weights.

Run through `a2gluon launch ... -- python tests/dist_worker.py OUT_DIR` (parameter
server; the scheduler and servers stop inside `import mxnet`) or `horovodrun ... python
tests/dist_worker.py OUT_DIR --kvstore horovod`. Each worker starts from different random
weights (seeded by its rank) and reads a different shard of one fixed data set, so that equal
final weights show both the initial broadcast and the gradient exchange. `tests/test_launch.py`
imports the helpers below to train the same net in one process as the reference.

`--raise-task T --raise-at-batch K` makes worker T raise in batch K while the others block in
the parameter server; like the trainer, the worker then prints one line and leaves with
`os._exit(1)` (a ps-lite worker that just raises hangs in the store's shutdown).
"""

import argparse
import os
import sys

import mxnet as mx  # on a server or the scheduler, this runs the node and exits
import numpy as np

OPTIMIZER = "sgd"
OPTIMIZER_PARAMS = {"learning_rate": 0.5, "momentum": 0.9}


def make_data(num_samples):
    """One fixed data set: 6 features, 3 classes."""
    rs = np.random.RandomState(42)
    x = rs.normal(size=(num_samples, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32") + (x[:, 2] > 1).astype("float32")
    return x, y


def build_net(seed):
    mx.random.seed(seed)
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(8, in_units=6, activation="relu"), mx.gluon.nn.Dense(3, in_units=8))
    net.initialize(mx.init.Xavier())
    return net


def train(net, trainer, x, y, batch_size, raise_at_batch=None):
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for batch, start in enumerate(range(0, len(x), batch_size)):
        if batch == raise_at_batch:
            raise RuntimeError(f"simulated failure at batch {batch}")
        xb, yb = mx.nd.array(x[start : start + batch_size]), mx.nd.array(y[start : start + batch_size])
        with mx.autograd.record():
            loss = loss_fn(net(xb), yb)
        loss.backward()
        trainer.step(len(xb))


def weights(net):
    return [p.data().asnumpy() for p in net.collect_params().values()]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--kvstore", default="dist_sync")
    parser.add_argument("--batches", type=int, default=4, help="batches per worker")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fail-task", type=int, help="this DMLC_TASK_ID exits with code 3")
    parser.add_argument("--raise-task", type=int, help="this DMLC_TASK_ID raises at --raise-at-batch")
    parser.add_argument("--raise-at-batch", type=int, default=1, help="batch index for --raise-task")
    args = parser.parse_args()

    task = os.environ.get("DMLC_TASK_ID")
    if args.fail_task is not None and task == str(args.fail_task):
        sys.exit(3)
    raise_at_batch = (
        args.raise_at_batch if args.raise_task is not None and task == str(args.raise_task) else None
    )
    try:
        run(args, raise_at_batch)
    except Exception as exc:  # noqa: BLE001 - a ps-lite worker that raises hangs in shutdown
        # As the trainer does: one line, then exit at once (a plain raise would block in the
        # parameter server's shutdown until the launcher's --timeout).
        print(
            f"dist_worker.py: error on task {task}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True
        )
        os._exit(1)


def run(args, raise_at_batch):
    """Train one epoch on this worker's shard and save the initial and final weights."""
    from a2gluon.engine.distributed import barrier, create_kvstore, make_trainer

    kv, info = create_kvstore(args.kvstore, 1)
    num_parts, part_index = info.num_workers, info.rank
    # Every worker runs the same number of batches (dist_sync hangs otherwise).
    x, y = make_data(args.batches * args.batch_size * num_parts)
    x, y = x[part_index::num_parts], y[part_index::num_parts]

    net = build_net(seed=1000 + info.rank)  # different initial weights on every worker
    initial = weights(net)
    trainer = make_trainer(net.collect_params(), OPTIMIZER, OPTIMIZER_PARAMS, kv, info)
    train(net, trainer, x, y, args.batch_size, raise_at_batch)
    barrier(kv, info)

    out = os.path.join(args.out_dir, f"rank{info.rank}.npz")
    arrays = {f"initial{i}": w for i, w in enumerate(initial)}
    arrays.update({f"final{i}": w for i, w in enumerate(weights(net))})
    np.savez(out + ".tmp.npz", num_workers=info.num_workers, data=x, **arrays)
    os.replace(out + ".tmp.npz", out)


if __name__ == "__main__":
    main()
