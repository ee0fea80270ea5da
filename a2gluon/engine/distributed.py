"""KVStore and Horovod set-up for the trainer: create the store, the Gluon trainer, the shard.

One call chain for every mode:

    kv, info = create_kvstore(kvstore_name, num_devices)
    trainer = make_trainer(net.collect_params(), "sgd", {"learning_rate": lr}, kv, info)
    # data: part info.rank of info.num_workers
    ...
    trainer.step(batch_size)                     # batch_size = samples on THIS worker

Gradients are the mean over the global batch (all devices of all workers): Horovod's
`DistributedTrainer` averages, and for the synchronous parameter-server stores `make_trainer`
divides the summed gradients by the number of workers (`rescale_grad`); with `dist_async`
the servers apply each worker's own batch mean as it arrives. Scale the learning
rate with the global batch (lr x num_workers, as Horovod's ImageNet example does) in the
caller. The optimizer runs on the workers (`update_on_kvstore=False`) so that the trainer can
set the learning rate every step, except with `dist_async`, where Gluon requires the servers
to update.

Processes are started by `a2gluon launch` (parameter server) or `horovodrun`.
"""

import os
from dataclasses import dataclass

import mxnet as mx

KVSTORES = (
    "none",
    "device",
    "local",
    "nccl",
    "dist_sync",
    "dist_device_sync",
    "dist_async",
    "horovod",
)
HOROVOD_INSTALL = (
    "HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 "
    "HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 "
    'pip install --no-build-isolation -e ".[horovod]"'
)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its store, its rank among the workers, how it updates."""

    kvstore_name: str
    rank: int
    num_workers: int
    is_horovod: bool
    update_on_kvstore: bool
    local_rank: int = 0  # Horovod: the rank on this machine (which GPU to use); 0 otherwise


def _import_horovod():
    try:
        import horovod.mxnet as hvd
    except ImportError as exc:
        raise ImportError(
            f"--kvstore horovod needs Horovod built with MXNet support ({exc}); install it "
            f"with: {HOROVOD_INSTALL}"
        ) from exc
    return hvd


def create_kvstore(name, num_devices, contexts=None):
    """(kvstore or None, DistInfo) for the store called `name` and `num_devices` per worker.

    `name`: None or 'none' (one device, no store), 'device', 'local', 'nccl', 'dist_sync',
    'dist_device_sync', 'dist_async' or 'horovod'. Non-distributed stores on one device give
    no store at all, as Gluon does. `contexts` (optional) lets 'nccl' refuse CPU contexts.
    """
    key = "none" if name is None else str(name).lower()
    if key not in KVSTORES:
        raise ValueError(f"unknown kvstore {name!r}; choose one of: {', '.join(KVSTORES)}")
    if num_devices < 1:
        raise ValueError(f"num_devices must be at least 1, got {num_devices}")

    if key == "horovod":
        if num_devices > 1:
            raise ValueError(
                "with --kvstore horovod every process drives one device; start one rank per "
                f"GPU (horovodrun -np N) instead of {num_devices} devices per process"
            )
        hvd = _import_horovod()
        hvd.init()
        info = DistInfo("horovod", hvd.rank(), hvd.size(), True, False, hvd.local_rank())
        return None, info

    if key == "none":
        if num_devices > 1:
            raise ValueError(f"{num_devices} devices need a kvstore to share gradients; use 'device'")
        return None, DistInfo("none", 0, 1, False, False)

    if key == "nccl":
        on_cpu = (
            any(ctx.device_type != "gpu" for ctx in contexts)
            if contexts is not None
            else mx.context.num_gpus() == 0
        )
        if on_cpu:
            raise ValueError(
                "kvstore 'nccl' reduces gradients between GPUs and cannot run on CPU "
                "contexts; use 'device' (or 'local') instead"
            )

    if not key.startswith("dist"):
        if os.environ.get("DMLC_ROLE") == "worker":
            raise ValueError(
                f"this process is a worker of a parameter-server job (started by "
                f"a2gluon launch) but the kvstore is {key!r}: every worker would train "
                "alone into the same files; add --kvstore dist_sync (or dist_device_sync)"
            )
        kv = mx.kv.create(key) if num_devices > 1 else None
        return kv, DistInfo(key, 0, 1, False, False)

    if "DMLC_ROLE" not in os.environ:
        raise RuntimeError(
            f"kvstore {key!r} needs a parameter-server job: start this command with "
            "a2gluon launch -n WORKERS -s SERVERS -- COMMAND"
        )
    kv = mx.kv.create(key)
    # Gluon refuses update_on_kvstore=False with an asynchronous store.
    update_on_kvstore = key == "dist_async"
    return kv, DistInfo(key, kv.rank, kv.num_workers, False, update_on_kvstore)


class _Trainer(mx.gluon.Trainer):
    """gluon.Trainer that shares rank 0's initial parameters when it is created.

    Plain Gluon broadcasts the parameters inside the first `step()`, after every worker has
    computed its first gradients from its own initial values. That broadcast's pull and the
    first gradient push-pull also use different buffers, so MXNet's engine may send them in
    either order; tried here on loopback, workers then often ended with different weights.
    Broadcasting here and waiting for the values avoids both.
    """

    def __init__(self, params, optimizer, optimizer_params, kvstore, update_on_kvstore):
        super().__init__(
            params, optimizer, optimizer_params, kvstore=kvstore, update_on_kvstore=update_on_kvstore
        )
        deferred = [p.name for p in self._params if p._deferred_init]
        if deferred:
            raise ValueError(
                f"parameters {', '.join(deferred[:3])}{', ...' if len(deferred) > 3 else ''} are "
                "not initialised yet (deferred shapes): run one forward pass before make_trainer "
                "so that every worker starts from rank 0's values"
            )
        self._init_kvstore()
        self._init_params()
        for param in self._params:
            for array in param.list_data():
                array.wait_to_read()


def make_trainer(params, optimizer, optimizer_params, kv, info):
    """A gluon.Trainer on `kv` (hvd.DistributedTrainer for Horovod).

    On a distributed store every worker gets rank 0's parameters here, before its first
    forward pass (Horovod: `hvd.broadcast_parameters`; parameter server: the store's
    broadcast, which needs initialised parameters, so run one forward pass first when
    shapes are deferred). Call `trainer.step(batch size of this worker)`.
    """
    optimizer_params = dict(optimizer_params or {})
    if hasattr(params, "values"):
        # Only what is trained: a parameter-server job fails ("init K first") when the store
        # also broadcasts BatchNorm running statistics, which every worker keeps for itself.
        params = {name: p for name, p in params.items() if p.grad_req != "null"}
    if info.is_horovod:
        hvd = _import_horovod()
        hvd.broadcast_parameters(params, root_rank=0)
        return hvd.DistributedTrainer(params, optimizer, optimizer_params)

    if kv is not None and info.num_workers > 1 and not info.update_on_kvstore:
        # The store sums the workers' gradients; make them a mean, as Horovod does.
        scale = optimizer_params.get("rescale_grad", 1.0)
        optimizer_params["rescale_grad"] = scale / info.num_workers
    update_on_kvstore = info.update_on_kvstore if kv is not None else None
    if info.kvstore_name.startswith("dist") and not update_on_kvstore:
        # dist_async (servers update) keeps Gluon's own start: it fixes the gradient scale
        # when the store is created at the first step(), and every step pulls the weights.
        return _Trainer(params, optimizer, optimizer_params, kv, update_on_kvstore)
    return mx.gluon.Trainer(
        params, optimizer, optimizer_params, kvstore=kv, update_on_kvstore=update_on_kvstore
    )


# kvstore keys no gluon.Trainer uses (its keys are the parameters' indexes).
STOP_KEY = 999_983
METRIC_KEY = 999_979


class WorkerSum:
    """The element-wise sum over every worker of a small float vector, each worker calling it at
    the same point.  Synchronous parameter servers add on the servers (a key of its own), Horovod
    with an allreduce; a single process, and dist_async (whose workers do not run in step),
    answer with their own values."""

    def __init__(self, kv, info, key, size):
        self._kv, self._info, self._key, self._size = kv, info, key, size
        self._server = kv is not None and info.kvstore_name in ("dist_sync", "dist_device_sync")
        if self._server:
            kv.init(key, mx.nd.zeros((size,)))

    def __call__(self, values):
        local = mx.nd.array(values, dtype="float64" if self._info.is_horovod else "float32")
        if self._info.is_horovod:
            hvd = _import_horovod()
            return hvd.allreduce(local, average=False, name=f"a2gluon_sum_{self._key}").asnumpy()
        if self._server:
            total = mx.nd.zeros((self._size,))
            self._kv.pushpull(self._key, local, out=total)
            return total.asnumpy()
        return local.asnumpy()


class StopVote:
    """Whether any worker was asked to stop, agreed by every worker after each step.

    Called once per step with this worker's own answer; returns True on every worker as soon as
    one of them was asked (a SIGTERM that reached some workers only, or reached them at different
    batches), so that all stop after the same batch: a synchronous job in which one worker runs
    a batch the others do not hangs."""

    def __init__(self, kv, info):
        self._sum = WorkerSum(kv, info, STOP_KEY, 1)

    def __call__(self, asked):
        return self._sum([1.0 if asked else 0.0])[0] > 0


def barrier(kv, info):
    """Wait until every worker reaches this point (no-op for a single process)."""
    if info.is_horovod:
        # Horovod has no barrier for MXNet: a tiny allreduce synchronises all ranks.
        hvd = _import_horovod()
        hvd.allreduce(mx.nd.zeros((1,)), name="a2gluon_barrier")
    elif kv is not None and info.kvstore_name.startswith("dist"):
        kv._barrier()
