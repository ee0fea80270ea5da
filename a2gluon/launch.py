"""Start a job on MXNet's parameter server: one scheduler, servers and workers (DMLC_* env).

    a2gluon launch -n 2 -s 1 -- python train_imagenet.py --kvstore dist_sync ...
    a2gluon launch -n 4 -s 2 --launcher ssh -H hosts.txt -- python train_imagenet.py ...

A thin wrapper over the dmlc tracker that ships inside the mxnet wheel (`dmlc_tracker`),
called the way MXNet's own `tools/launch.py` calls it, with these additions:

- `Thread.isAlive` (removed in Python 3.9) is aliased to `is_alive`, which the tracker calls;
- `--launcher local` keeps everything on loopback (`--host-ip`, 127.0.0.1 by default): the
  scheduler announces that address (DMLC_PS_ROOT_URI) and the servers and workers bind to it
  (DMLC_NODE_HOST), where the tracker would otherwise pick the first non-loopback interface;
  the tracker's shell `exec`s the command, so that every worker is the process the tracker
  started (no shell in between that would swallow a signal or its exit status);
- the job's exit code is the launcher's: the first process that fails ends the job, and the
  launcher exits with that process's code (128 + N, named, for a process killed by signal N);
- `--timeout SECONDS` kills the whole job (exit code 124) instead of waiting forever, which
  is what a parameter-server job does when one worker dies;
- SIGTERM, SIGHUP or SIGINT to the launcher (cluster pre-emption, its terminal or ssh session
  closed, Ctrl-C) stops the job in order: SIGTERM to the worker processes only (the trainer's
  cue to write a checkpoint and exit), a wait of up to `--stop-timeout` seconds for them to
  exit, then SIGTERM (SIGKILL after a few seconds) to the servers and the scheduler; the
  launcher prints one line saying what it did and exits with 128 + the signal (143 for
  SIGTERM). A second stop signal during the wait kills the whole job at once. Once a stop
  has begun, `--stop-timeout` bounds it instead of `--timeout`. A signal the launcher was
  started to ignore (`nohup` ignores SIGHUP) stays ignored. The SIGTERM goes to the process
  the command starts: a wrapper script must `exec` the trainer (a shell that waits for it
  dies of the signal, and the trainer gets its SIGTERM only with the servers, a few seconds
  before SIGKILL).

The job runs in its own session (process group) so that it can be killed as a whole.

With `--launcher ssh` the servers and workers run on other hosts behind `ssh`, which forwards
no signals (and, started without a terminal, no hang-up either): a stop signal terminates the
local part of the job at once, the scheduler and the ssh clients, as `--timeout` does. The
remote processes are neither asked to checkpoint nor killed; cut off from the scheduler, they
end when they next write to their closed output or stay blocked in the parameter server. To
stop such a job with a checkpoint, send SIGTERM to the training process on every host.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

PROG = "a2gluon launch"
TIMEOUT_EXIT = 124
GRACE_SECONDS = 5.0
STOP_TIMEOUT = 120.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class LaunchError(Exception):
    """A usage error: printed as one line, exit code 2."""


def _role_prefix(args):
    """Shell words that set the per-role variables before the command (the tracker gives
    every process the same environment apart from DMLC_ROLE)."""
    words = []
    for role, env in (("server", args.env_server), ("worker", args.env_worker)):
        if env:
            exports = " ".join(f"export {k}={_quote(v, args.launcher)};" for k, v in env.items())
            words.append(f'if [ "$DMLC_ROLE" = {role} ]; then {exports} fi;')
    return words


def _quote(arg, launcher):
    """One command-line word for the tracker, which joins the command with spaces for bash."""
    if launcher == "local":
        return shlex.quote(arg)
    # ssh wraps the whole remote command in single quotes: quote with double quotes inside.
    if "'" in arg:
        raise LaunchError(f"--launcher ssh cannot pass an argument with a single quote: {arg!r}")
    if re.fullmatch(r"[\w@%+=:,./-]+", arg):
        return arg
    return '"' + re.sub(r'([\\"$`])', r"\\\1", arg) + '"'


def _exit_code(returncode):
    """A process's return code as a shell would report it (signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_name(signum):
    """'SIGTERM' for 15: how a signal is named in the messages."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _say(line):
    """Print one line to stderr; quietly nothing when stderr is gone (a closed terminal)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def _fail_job(args, exc_type, exc_value):
    """A tracker thread saw a process fail: report it in one line and end the job runner."""
    if isinstance(exc_value, subprocess.CalledProcessError):
        code = exc_value.returncode
    else:
        # dmlc_tracker.local: RuntimeError('Get nonzero return code=%d on %s %s' % (ret, cmd, env))
        found = re.search(r"return code=(-?\d+)", str(exc_value))
        code = int(found.group(1)) if found else 1
    if code < 0:
        what = f"was killed by {_signal_name(-code)} (exit code {_exit_code(code)})"
    else:
        what = f"exited with code {code}"
    code = _exit_code(code) or 1
    text = str(exc_value)
    role = re.search(r"DMLC_ROLE'?[:=] ?'?(\w+)", text)
    task = re.search(r"DMLC_TASK_ID': '(\d+)'", text)
    if role:
        who = role.group(1) + (f" {task.group(1)}" if task else "")
    elif isinstance(exc_value, subprocess.CalledProcessError) and "ssh " not in str(exc_value.cmd):
        who = "the scheduler"
    else:
        who = "a process of the job"
    _say(f"{PROG}: error: {who} {what}; stopping the job")
    os._exit(code)


def _patch_tracker(args):
    """Python 3.9+ and loopback fixes for the tracker; our environment for every process."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive
    from dmlc_tracker import tracker

    submit = tracker.submit
    extra_env = dict(args.env)
    if args.launcher == "local":
        # ps-lite binds servers and workers to the first non-loopback interface unless told.
        extra_env["DMLC_NODE_HOST"] = args.host_ip
    # The scheduler (and, for local, every process) takes its environment from ours.
    os.environ.update(extra_env)
    if args.launcher == "ssh":
        # The ssh launcher writes `export KEY=VALUE;` into the remote command line.
        extra_env = {key: _quote(value, "ssh") for key, value in extra_env.items()}

    def submit_with_env(nworker, nserver, fun_submit, hostIP="auto", pscmd=None):
        def fun_submit_with_env(nw, ns, envs):
            envs.update(extra_env)
            return fun_submit(nw, ns, envs)

        host_ip = args.host_ip if args.host_ip else hostIP
        return submit(nworker, nserver, fun_submit_with_env, hostIP=host_ip, pscmd=pscmd)

    tracker.submit = submit_with_env


def run_job(args):
    """Run the tracker in this process (the job runner); returns only on success."""
    threading.excepthook = lambda hook: _fail_job(args, hook.exc_type, hook.exc_value)
    _patch_tracker(args)
    from dmlc_tracker import opts

    dmlc_args = ["--cluster", args.launcher, "--num-workers", str(args.num_workers)]
    dmlc_args += ["--num-servers", str(args.num_servers)]
    if args.hostfile:
        dmlc_args += ["--host-file", args.hostfile]
    if args.sync_dst_dir:
        dmlc_args += ["--sync-dst-dir", args.sync_dst_dir]
    if args.host_ip:
        dmlc_args += ["--host-ip", args.host_ip]
    dmlc = opts.get_opts(dmlc_args + ["true"])
    # The command is set here, not parsed by the tracker, so that its options stay its own.
    words = [_quote(word, args.launcher) for word in args.command]
    if args.launcher == "local":
        # The shell becomes the command, so that the launcher can signal every worker and the
        # tracker sees a signal as such. Quoted: the tracker runs `./WORD` instead of WORD when
        # a file called WORD exists in the current directory.
        words = ["'exec'"] + words
    dmlc.command = _role_prefix(args) + words
    if args.launcher == "local":
        from dmlc_tracker import local

        local.submit(dmlc)
    else:
        from dmlc_tracker import ssh

        ssh.submit(dmlc)
    # The scheduler has finished; wait for the workers and servers to exit too.
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join()


def _proc_stat(pid):
    """(state, ppid, pgrp, starttime) of process `pid` from /proc/PID/stat; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # pid (comm) state ppid pgrp ... starttime is field 22; comm may hold spaces and ')'.
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    if len(fields) < 20:
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _group_members(pgid):
    """{pid: (state, ppid, pgrp, starttime)} of the processes of group `pgid` that still run
    (zombies, which wait to be reaped by whoever adopted them, do not count)."""
    members = {}
    if not os.path.isdir("/proc/self"):
        return members
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[2] == pgid and stat[0] != "Z":
                members[int(entry)] = stat
    return members


def _group_alive(pgid):
    """Whether a process of group `pgid` still runs (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not os.path.isdir("/proc/self"):
        return True
    return bool(_group_members(pgid))


def _is_worker(pid):
    """Whether process `pid` was started with DMLC_ROLE=worker in its environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"DMLC_ROLE=worker" in f.read().split(b"\0")
    except OSError:
        return False


def _job_workers(pgid):
    """The workers of the job whose runner is `pgid`, as (pid, starttime): its processes
    started with DMLC_ROLE=worker whose parent is not one (children of a worker, such as data
    loader processes, are left to the worker)."""
    members = _group_members(pgid)
    workers = {pid for pid in members if pid != pgid and _is_worker(pid)}
    return [(pid, members[pid][3]) for pid in sorted(workers) if members[pid][1] not in workers]


def _running(pid, starttime):
    """Whether the process `pid` started at `starttime` still runs (not a zombie)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z" and stat[3] == starttime


def _kill_group(pgid, hurry=None):
    """SIGTERM the job's process group, then SIGKILL whatever is left after a grace period,
    or as soon as `hurry()` says so."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        if not _group_alive(pgid) or (hurry is not None and hurry()):
            break
        time.sleep(0.1)
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait(pid, timeout, received):
    """Wait for the job runner; its exit status, or None when `timeout` seconds passed or a
    stop signal arrived (in `received`) first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if received or (deadline is not None and time.monotonic() >= deadline):
            return None
        time.sleep(0.1)


def _stop(pgid, args, received):
    """The job on a stop signal (the first of `received`): the workers first, so that they can
    write a checkpoint, then the rest; returns 128 + the signal."""
    signum = received[0]
    name = _signal_name(signum)

    def again():
        """Whether a second stop signal came: no more waiting."""
        return len(received) > 1

    if args.launcher != "local":
        _kill_group(pgid, again)
        _say(
            f"{PROG}: {name}: stopped the job's local processes (the scheduler and the ssh "
            "clients); ssh forwards no signals, so the remote workers were not asked to checkpoint"
        )
        return 128 + signum
    start = time.monotonic()
    workers = _job_workers(pgid)
    for pid, _ in workers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    count = len(workers)
    asked = f"asked {count} worker{'' if count == 1 else 's'} to checkpoint and exit"
    while True:
        running = [worker for worker in workers if _running(*worker)]
        seconds = time.monotonic() - start
        if not running:
            outcome = (
                f"{'the worker' if count == 1 else 'the workers'} exited within {seconds:.1f} s"
                if count
                else "no worker was running"
            )
            break
        if again():
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            _say(
                f"{PROG}: {name}: stopping the job: {asked}; {_signal_name(received[1])} again "
                f"after {seconds:.1f} s: killed the job at once"
            )
            return 128 + signum
        if seconds >= args.stop_timeout:
            outcome = (
                f"{len(running)} of {count} worker{'' if count == 1 else 's'} still ran after "
                f"--stop-timeout {args.stop_timeout:g} s"
            )
            break
        time.sleep(0.1)
    if not _group_alive(pgid):
        ending = "the servers and the scheduler had ended too"
    elif running:
        ending = "then terminated the job"
    else:
        ending = "then terminated the servers and the scheduler"
    _kill_group(pgid, again)
    _say(f"{PROG}: {name}: stopping the job: {asked}; {outcome}; {ending}")
    return 128 + signum


def _catch_stop_signals(received):
    """Record SIGTERM, SIGHUP and SIGINT in `received` instead of dying; the previous handlers.
    A signal this process was started to ignore (nohup) stays ignored."""
    previous = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        previous[signum] = signal.SIG_DFL if handler is None else handler
        if handler != signal.SIG_IGN:
            signal.signal(signum, lambda num, frame: received.append(num))
    return previous


def _restore_signals(previous):
    """Put back the handlers that _catch_stop_signals replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def launch(args):
    """Run the job in a child process in its own session; its exit code (124 on timeout,
    128 + N when stopped by signal N)."""
    received = []
    previous = _catch_stop_signals(received)  # before the fork: no moment without a handler
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _restore_signals(previous)
            os.setsid()
            run_job(args)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - the child must never return to the caller
            print(f"{PROG}: error: {exc}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    code = 1
    try:
        status = _wait(pid, args.timeout, received)
        if status is not None:
            code = _exit_code(status)
        elif received:
            code = _stop(pid, args, received)
        else:
            _say(f"{PROG}: error: the job ran longer than --timeout {args.timeout:g} s; killed it")
            code = TIMEOUT_EXIT
    finally:
        # Whatever is left of the job; a stop signal now cuts the grace period short.
        signals_before = len(received)
        _kill_group(pid, lambda: len(received) > signals_before)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        _restore_signals(previous)
    return code
