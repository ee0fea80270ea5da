"""The parameter-server launcher and the kvstore layer: real jobs on loopback, error paths."""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from a2gluon import launch
from a2gluon.cli import launch as launch_cli
from a2gluon.engine import distributed
from a2gluon.engine.distributed import DistInfo, create_kvstore, make_trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dist_worker  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "dist_worker.py")
BATCHES, BATCH_SIZE = 4, 8


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")  # every process of a job on 1 thread


def _launch(options, command, timeout=120):
    """Run `a2gluon launch OPTIONS -- COMMAND`; (returncode, stderr, seconds)."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "a2gluon", "launch", *options, "--", *command],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stderr, time.monotonic() - start


def _reference(initial, x0, x1):
    """The same training in one process on the union of both shards, from rank 0's init."""
    net = dist_worker.build_net(seed=0)
    for param, value in zip(net.collect_params().values(), initial):
        param.set_data(mx.nd.array(value))
    trainer = mx.gluon.Trainer(
        net.collect_params(), dist_worker.OPTIMIZER, dist_worker.OPTIMIZER_PARAMS, kvstore=None
    )
    # Global batch i = batch i of worker 0 and batch i of worker 1.
    x = np.stack([x0.reshape(BATCHES, BATCH_SIZE, -1), x1.reshape(BATCHES, BATCH_SIZE, -1)], 1)
    _, full_y = dist_worker.make_data(2 * BATCHES * BATCH_SIZE)
    y = np.stack([full_y[0::2].reshape(BATCHES, -1), full_y[1::2].reshape(BATCHES, -1)], 1)
    dist_worker.train(net, trainer, x.reshape(-1, 6), y.reshape(-1), 2 * BATCH_SIZE)
    return dist_worker.weights(net)


def _check_two_workers(out_dir):
    """Both ranks wrote identical final weights, equal to one process on the whole data."""
    files = [out_dir / f"rank{r}.npz" for r in (0, 1)]
    assert all(f.exists() for f in files), sorted(os.listdir(out_dir))
    r0, r1 = (np.load(f) for f in files)
    assert int(r0["num_workers"]) == int(r1["num_workers"]) == 2
    assert not np.array_equal(r0["data"], r1["data"])  # different shards
    n = len([k for k in r0.files if k.startswith("final")])
    initial0 = [r0[f"initial{i}"] for i in range(n)]
    assert not np.array_equal(r0["initial0"], r1["initial0"])  # different random inits
    for i in range(n):
        np.testing.assert_array_equal(r0[f"final{i}"], r1[f"final{i}"])
    assert max(np.abs(r0[f"final{i}"] - initial0[i]).max() for i in range(n)) > 1e-2
    for got, want in zip([r0[f"final{i}"] for i in range(n)], _reference(initial0, r0["data"], r1["data"])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_dist_sync_two_workers_one_server_end_identical(tmp_path):
    code, err, seconds = _launch(
        ["-n", "2", "-s", "1", "--launcher", "local", "--timeout", "90"],
        [sys.executable, WORKER, str(tmp_path), "--batches", str(BATCHES)],
    )
    assert code == 0, err[-3000:]
    _check_two_workers(tmp_path)


def test_dist_async_two_workers_train(tmp_path):
    code, err, _ = _launch(
        ["-n", "2", "-s", "1", "--timeout", "90"],
        [sys.executable, WORKER, str(tmp_path), "--kvstore", "dist_async", "--batches", str(BATCHES)],
    )
    assert code == 0, err[-3000:]
    for rank in (0, 1):  # servers update: no equality to expect, but the weights moved
        r = np.load(tmp_path / f"rank{rank}.npz")
        assert np.abs(r["final0"] - r["initial0"]).max() > 1e-2


def _horovod_missing():
    if importlib.util.find_spec("horovod") is None:
        return "horovod is not installed (pip install .[horovod], see setup.cfg)"
    try:
        import horovod.mxnet  # noqa: F401
    except ImportError as exc:
        return f"horovod.mxnet does not import: {exc}"
    return None


@pytest.mark.skipif(_horovod_missing() is not None, reason=str(_horovod_missing()))
def test_horovod_two_ranks_end_identical(tmp_path):
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    proc = subprocess.run(
        [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", "--network-interface", "lo"]
        + [sys.executable, WORKER, str(tmp_path), "--kvstore", "horovod", "--batches", str(BATCHES)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    _check_two_workers(tmp_path)


def test_failing_worker_ends_the_job_with_its_code(tmp_path):
    code, err, seconds = _launch(
        ["-n", "2", "-s", "1", "--timeout", "60"],
        [sys.executable, WORKER, str(tmp_path), "--fail-task", "1"],
    )
    assert code == 3, err[-3000:]
    assert "worker 1 exited with code 3" in err
    assert seconds < 50  # ended by the failure, not by --timeout


def test_timeout_kills_every_process_of_the_job(tmp_path):
    sleeper = (
        f"import os, time; open(os.path.join({str(tmp_path)!r}, str(os.getpid())), 'w'); time.sleep(120)"
    )
    code, err, seconds = _launch(["-n", "1", "-s", "1", "--timeout", "3"], [sys.executable, "-c", sleeper])
    assert code == launch.TIMEOUT_EXIT, err
    assert "--timeout 3" in err
    assert seconds < 30
    pids = [int(name) for name in os.listdir(tmp_path)]
    assert len(pids) == 3  # scheduler, server, worker
    time.sleep(0.5)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                state = next(line for line in f if line.startswith("State:"))
        except FileNotFoundError:
            continue
        assert "Z" in state, f"process {pid} still running: {state}"


def _left_running(marker, wait=3.0):
    """Pids of live processes (not zombies) whose command line contains `marker`, after
    giving processes killed a moment ago `wait` seconds to go."""
    deadline = time.monotonic() + wait
    while True:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if marker.encode() in cmdline and state != "Z":
                pids.append(int(entry))
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.1)


@pytest.mark.slow
def test_worker_raising_mid_training_ends_the_job_with_its_message(tmp_path):
    # Worker 1 raises in batch 2 while worker 0 and the server block in its push/pull.
    code, err, seconds = _launch(
        ["-n", "2", "-s", "1", "--timeout", "90"],
        [
            sys.executable,
            WORKER,
            str(tmp_path),
            "--batches",
            "8",
            "--raise-task",
            "1",
            "--raise-at-batch",
            "2",
        ],
    )
    assert code == 1, err[-3000:]
    assert "dist_worker.py: error on task 1: RuntimeError: simulated failure at batch 2" in err
    assert "a2gluon launch: error: worker 1 exited with code 1; stopping the job" in err
    assert seconds < 30  # ended by the failure, not by --timeout
    assert not (tmp_path / "rank0.npz").exists()
    assert _left_running(str(tmp_path)) == []


def test_worker_killed_by_a_signal_is_named(tmp_path):
    # Worker 1 dies as a damaged JPEG kills the decoder; the others wait for it to register.
    script = (
        "import os, signal\n"
        "if os.environ['DMLC_ROLE'] == 'worker' and os.environ['DMLC_TASK_ID'] == '1':\n"
        "    os.kill(os.getpid(), signal.SIGFPE)\n"
        "import mxnet\n"
    )
    code, err, seconds = _launch(
        ["-n", "2", "-s", "1", "--timeout", "60", "--env-worker", "A2_W:1"],
        [sys.executable, "-c", script, str(tmp_path)],
    )
    assert code == 128 + signal.SIGFPE, err[-3000:]
    assert "error: worker 1 was killed by SIGFPE (exit code 136); stopping the job" in err
    assert seconds < 30
    assert _left_running(str(tmp_path)) == []


# A job for the stop tests: every worker "writes a checkpoint" (sleeps) on SIGTERM, then notes
# how many of the other processes still ran and leaves; the scheduler and the server run their
# node inside `import mxnet`, and never end on their own (the workers skip ps-lite's shutdown).
STOP_JOB = """
import os, signal, sys, time

OUT, SECONDS = sys.argv[1], float(sys.argv[2])
NAME = os.environ["DMLC_ROLE"] + "-" + os.environ.get("DMLC_TASK_ID", "0")
with open(os.path.join(OUT, NAME + ".pid"), "w") as f:
    f.write(str(os.getpid()))


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def checkpoint(signum, frame):
    time.sleep(SECONDS)
    others = [n for n in os.listdir(OUT) if n.endswith(".pid") and not n.startswith("worker")]
    alive = sum(running(int(open(os.path.join(OUT, n)).read())) for n in others)
    with open(os.path.join(OUT, NAME + ".done"), "w") as f:
        f.write(f"{len(others)} {alive}")
    os._exit(0)


if NAME.startswith("worker"):
    signal.signal(signal.SIGTERM, checkpoint)
import mxnet as mx

kv = mx.kv.create("dist_sync")  # kept: the store's destructor would end the job
open(os.path.join(OUT, NAME + ".ready"), "w").close()
while True:
    time.sleep(0.1)
"""


def _start_stop_job(tmp_path, options, checkpoint_seconds):
    """Start STOP_JOB (2 workers, 1 server) under the launcher; (Popen, out dir) once the
    workers are connected to the parameter server."""
    script = tmp_path / "stop_job.py"
    script.write_text(STOP_JOB)
    out = tmp_path / "out"
    out.mkdir()
    proc = _start_launcher(
        ["-n", "2", "-s", "1", "--timeout", "120", *options]
        + ["--", sys.executable, str(script), str(out), str(checkpoint_seconds)],
        tmp_path,
        _env(),
    )
    deadline = time.monotonic() + 60
    while not all((out / f"worker-{rank}.ready").exists() for rank in (0, 1)):
        if proc.poll() is not None or time.monotonic() > deadline:
            _end(proc, tmp_path)
            pytest.fail(f"the job did not start: {_stderr(proc)[-3000:]}")
        time.sleep(0.1)
    return proc, out


def _start_launcher(argv, tmp_path, env):
    """`a2gluon launch ARGV` with its stderr in a file (a pipe nobody reads could fill and block
    it) and faulthandler on, so that a launcher that hangs can show where (_signal_and_wait)."""
    err = open(tmp_path / "launcher.err", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "a2gluon", "launch", *argv],
        cwd=ROOT,
        env=env,
        stderr=err,
        text=True,
    )
    proc.err_file = err
    return proc


def _stderr(proc):
    proc.err_file.seek(0)
    return proc.err_file.read()


def _end(proc, tmp_path):
    """Leave nothing behind, whatever the test saw."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pid in _left_running(str(tmp_path), wait=0):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _signal_and_wait(proc, tmp_path, *signals, between=1.0):
    """Send `signals` to the launcher, `between` seconds apart; (stderr, seconds from the last
    signal to the launcher's exit, processes of the job left running)."""
    try:
        for i, signum in enumerate(signals):
            if i:
                time.sleep(between)
            proc.send_signal(signum)
        start = time.monotonic()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            proc.wait(timeout=10)
            pytest.fail(
                f"the launcher still ran 60 s after the last signal; its stderr: {_stderr(proc)[-6000:]}"
            )
        seconds = time.monotonic() - start
        left = _left_running(str(tmp_path))
    finally:
        _end(proc, tmp_path)
    return _stderr(proc), seconds, left


def _launcher_lines(err):
    return [line for line in err.splitlines() if line.startswith("a2gluon launch:")]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_lets_the_workers_checkpoint_before_the_servers_end(tmp_path, signum):
    # SIGTERM: cluster pre-emption; SIGHUP: the launcher's terminal or ssh session is gone.
    proc, out = _start_stop_job(tmp_path, [], checkpoint_seconds=1.0)
    err, seconds, left = _signal_and_wait(proc, tmp_path, signum)
    assert proc.returncode == 128 + signum, err[-3000:]
    # Both workers finished their checkpoint while the scheduler and the server still ran.
    assert [(out / f"worker-{rank}.done").read_text() for rank in (0, 1)] == ["2 2", "2 2"]
    assert seconds >= 1.0
    lines = _launcher_lines(err)
    assert len(lines) == 1, err[-3000:]
    assert re.fullmatch(
        f"a2gluon launch: {signal.Signals(signum).name}: stopping the job: asked 2 workers "
        r"to checkpoint and exit; the workers exited within \d+\.\d s; then terminated the servers "
        "and the scheduler",
        lines[0],
    ), lines[0]
    assert left == []


@pytest.mark.slow
def test_second_signal_kills_the_job_at_once(tmp_path):
    proc, out = _start_stop_job(tmp_path, [], checkpoint_seconds=60)
    err, seconds, left = _signal_and_wait(proc, tmp_path, signal.SIGINT, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    assert seconds < 5
    assert not list(out.glob("*.done"))
    lines = _launcher_lines(err)
    assert len(lines) == 1 and "asked 2 workers to checkpoint and exit" in lines[0], err[-3000:]
    assert lines[0].startswith("a2gluon launch: SIGINT: stopping the job:"), lines[0]
    assert "SIGTERM again after 1." in lines[0] and lines[0].endswith("killed the job at once")
    assert left == []


@pytest.mark.slow
def test_stop_timeout_bounds_the_wait_for_the_workers(tmp_path):
    proc, out = _start_stop_job(tmp_path, ["--stop-timeout", "2"], checkpoint_seconds=60)
    err, seconds, left = _signal_and_wait(proc, tmp_path, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert 2 <= seconds < 2 + launch.GRACE_SECONDS + 5
    lines = _launcher_lines(err)
    assert len(lines) == 1, err[-3000:]
    assert "2 of 2 workers still ran after --stop-timeout 2 s; then terminated the job" in lines[0]
    assert left == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "2"], "no command given"),
        (["-n", "2", "--"], "no command given"),
        (["-n", "0", "--", "true"], "at least 1"),
        (["-n", "2", "-s", "0", "--", "true"], "at least 1"),
        (["--", "true"], "required: -n/--num-workers"),
        (["-n", "2", "--launcher", "ssh", "--", "true"], "needs a hostfile"),
        (["-n", "2", "--launcher", "ssh", "-H", "/nonexistent/hosts", "--", "true"], "hostfile not found"),
        (["-n", "2", "-H", "hosts", "--", "true"], "for --launcher ssh"),
        (["-n", "2", "--env", "NOVALUE", "--", "true"], "KEY:VALUE"),
        (["-n", "2", "--timeout", "0", "--", "true"], "positive"),
        (["-n", "2", "--stop-timeout", "-1", "--", "true"], "--stop-timeout must be positive"),
        (
            ["-n", "2", "--launcher", "ssh", "-H", __file__, "--stop-timeout", "9", "--", "true"],
            "ssh forwards no",
        ),
        (["-n", "2", "--bogus", "--", "true"], "unrecognized arguments"),
        (["-n", "2", "--launcher", "ssh", "-H", __file__, "--", "echo", "'"], "single quote"),
    ],
)
def test_usage_errors_are_one_line(argv, message, capsys):
    assert launch_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("a2gluon launch: error: "), err
    assert message in err


def test_usage_error_from_the_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "a2gluon", "launch", "-n", "2", "python", "x.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "error:" in proc.stderr


def test_arguments_and_environment_reach_the_command_unchanged(tmp_path):
    out = tmp_path / "args.txt"
    script = (
        "import os, sys; e = os.environ; open(sys.argv[1], 'a').write(e['DMLC_ROLE'] + ' '"
        " + e.get('A2_W', '-') + e.get('A2_S', '-') + e['A2_ALL'] + repr(sys.argv[2:]) + '\\n')"
    )
    code, err, _ = _launch(
        ["-n", "1", "-s", "1", "--timeout", "60", "--env", "A2_ALL:a:b", "--env-worker", "A2_W:w $x"]
        + ["--env-server", "A2_S:s"],
        [sys.executable, "-c", script, str(out), "a b", "$HOME", "--log-level", "x'y"],
    )
    assert code == 0, err
    # Scheduler, server and worker all run the command.
    args = "['a b', '$HOME', '--log-level', \"x'y\"]"
    assert sorted(out.read_text().splitlines()) == [
        f"scheduler --a:b{args}",
        f"server -sa:b{args}",
        f"worker w $x-a:b{args}",
    ]


def _fake_ssh(tmp_path):
    """(environment with an `ssh` on PATH that runs the remote command here, hostfile)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text('#!/bin/bash\nfor last; do :; done\nexec bash -c "$last"\n')
    fake_ssh.chmod(0o755)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("127.0.0.1\n127.0.0.1:22 slots=2\n")
    return dict(_env(), PATH=f"{bin_dir}:{os.environ['PATH']}"), hostfile


def test_ssh_launcher_with_a_hostfile(tmp_path):
    """--launcher ssh end to end, with an `ssh` on PATH that runs the remote command here."""
    env, hostfile = _fake_ssh(tmp_path)
    out = tmp_path / "args.txt"
    script = (
        'import os, sys; e = os.environ; open(sys.argv[1], "a").write(e["DMLC_ROLE"] + e["A2_TEST"]'
        ' + repr(sys.argv[2:]) + "\\n")'
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "a2gluon", "launch", "-n", "1", "-s", "1", "--launcher", "ssh"]
        + ["-H", str(hostfile), "--host-ip", "127.0.0.1", "--timeout", "60", "--env", "A2_TEST:x y"]
        + ["--", sys.executable, "-c", script, str(out), "a b", "$HOME"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - start < 60
    assert sorted(out.read_text().splitlines()) == [
        f"{role}x y['a b', '$HOME']" for role in ("scheduler", "server", "worker")
    ]


def test_ssh_launcher_stop_signal_ends_the_local_part_at_once(tmp_path):
    # ssh forwards no signals: no checkpoint to wait for; the local processes end as before.
    env, hostfile = _fake_ssh(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    sleeper = 'import os, sys, time; open(os.path.join(sys.argv[1], str(os.getpid())), "w"); time.sleep(120)'
    proc = _start_launcher(
        ["-n", "1", "-s", "1", "--launcher", "ssh", "-H", str(hostfile), "--host-ip", "127.0.0.1"]
        + ["--timeout", "60", "--", sys.executable, "-c", sleeper, str(out)],
        tmp_path,
        env,
    )
    deadline = time.monotonic() + 30
    while len(os.listdir(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    started = len(os.listdir(out))
    err, seconds, left = _signal_and_wait(proc, tmp_path, signal.SIGTERM)
    assert started == 3, err[-3000:]  # scheduler, server, worker
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert seconds < launch.GRACE_SECONDS + 5
    assert _launcher_lines(err) == [
        "a2gluon launch: SIGTERM: stopped the job's local processes (the scheduler and the "
        "ssh clients); ssh forwards no signals, so the remote workers were not asked to checkpoint"
    ]
    assert left == []


# The kvstore layer without processes.


def test_create_kvstore_single_process_choices():
    assert create_kvstore(None, 1) == (None, DistInfo("none", 0, 1, False, False))
    kv, info = create_kvstore("device", 1)  # as Gluon: no store for one device
    assert kv is None and info.kvstore_name == "device" and info.num_workers == 1
    kv, info = create_kvstore("local", 2)
    assert kv.type == "local" and not info.update_on_kvstore
    assert (info.num_workers, info.rank) == (1, 0)


@pytest.mark.parametrize(
    ("name", "devices", "error", "message"),
    [
        ("bogus", 1, ValueError, "dist_sync"),
        ("nccl", 2, ValueError, "CPU"),
        ("none", 2, ValueError, "'device'"),
        ("horovod", 2, ValueError, "one device"),
    ],
)
def test_create_kvstore_refuses(name, devices, error, message):
    if name == "nccl" and mx.context.num_gpus() > 0:
        pytest.skip("this machine has GPUs")
    with pytest.raises(error, match=message):
        create_kvstore(name, devices)


def test_nccl_refuses_cpu_contexts():
    with pytest.raises(ValueError, match="CPU"):
        create_kvstore("nccl", 2, contexts=[mx.cpu(0), mx.cpu(1)])


def test_dist_kvstore_outside_a_job_says_how_to_launch(monkeypatch):
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    with pytest.raises(RuntimeError, match="a2gluon launch"):
        create_kvstore("dist_sync", 1)


def test_horovod_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "horovod.mxnet", None)
    with pytest.raises(ImportError, match=r"pip install --no-build-isolation -e \"\.\[horovod\]\""):
        create_kvstore("horovod", 1)


def test_make_trainer_single_device_and_rescale():
    net = dist_worker.build_net(seed=0)
    trainer = make_trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, *create_kvstore(None, 1))
    assert isinstance(trainer, mx.gluon.Trainer) and trainer.learning_rate == 0.1
    assert trainer._scale == 1.0
    # Synchronous stores sum the workers' gradients; make_trainer turns the sum into a mean.
    info = DistInfo("dist_sync", 0, 4, False, False)
    kv = mx.kv.create("local")
    trainer = make_trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kv, info)
    assert isinstance(trainer, distributed._Trainer) and trainer._scale == 0.25


def test_make_trainer_refuses_deferred_parameters_on_a_dist_store():
    net = mx.gluon.nn.Dense(3)
    net.initialize()
    info = DistInfo("dist_sync", 0, 2, False, False)
    with pytest.raises(ValueError, match="forward pass"):
        make_trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, mx.kv.create("local"), info)
