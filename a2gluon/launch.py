"""Start a job on MXNet's parameter server: one scheduler, servers and workers (DMLC_* env).

    python -m a2gluon.launch -n 2 -s 1 -- python train_imagenet.py --kvstore dist_sync ...
    python -m a2gluon.launch -n 4 -s 2 --launcher ssh -H hosts.txt -- python train_imagenet.py ...

A thin wrapper over the dmlc tracker that ships inside the mxnet wheel (`dmlc_tracker`),
called the way MXNet's own `tools/launch.py` calls it, with four additions:

- `Thread.isAlive` (removed in Python 3.9) is aliased to `is_alive`, which the tracker calls;
- `--launcher local` keeps everything on loopback (`--host-ip`, 127.0.0.1 by default): the
  scheduler announces that address (DMLC_PS_ROOT_URI) and the servers and workers bind to it
  (DMLC_NODE_HOST), where the tracker would otherwise pick the first non-loopback interface;
- the job's exit code is the launcher's: the first process that fails ends the job, and the
  launcher exits with that process's code;
- `--timeout SECONDS` kills the whole job (exit code 124) instead of waiting forever, which
  is what a parameter-server job does when one worker dies.

The job runs in its own session (process group) so that it can be killed as a whole.
"""

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

PROG = "python -m a2gluon.launch"
TIMEOUT_EXIT = 124
GRACE_SECONDS = 5.0


class LaunchError(Exception):
    """A usage error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise LaunchError(message)


def build_parser():
    parser = _Parser(
        prog=PROG,
        description="Start MXNet's parameter server (scheduler, servers, workers) and run "
        "COMMAND as every worker and server.",
        usage=f"{PROG} -n WORKERS [-s SERVERS] [--launcher local|ssh] [-H HOSTFILE] [options] -- COMMAND ...",
    )
    parser.add_argument("-n", "--num-workers", type=int, required=True, help="number of workers")
    parser.add_argument(
        "-s", "--num-servers", type=int, help="number of servers (default: as many as workers)"
    )
    parser.add_argument(
        "--launcher",
        choices=["local", "ssh"],
        default="local",
        help="local: every process on this machine, on loopback; ssh: on the hosts of -H",
    )
    parser.add_argument(
        "-H", "--hostfile", help="ssh: one host per line (host or host:port, 'slots=' ignored)"
    )
    parser.add_argument(
        "--sync-dst-dir",
        help="ssh: rsync the current directory to this directory on every host first, run there",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY:VALUE",
        help="set an environment variable for the scheduler, servers and workers (repeatable)",
    )
    parser.add_argument(
        "--env-server",
        action="append",
        default=[],
        metavar="KEY:VALUE",
        help="set an environment variable for the servers only (repeatable)",
    )
    parser.add_argument(
        "--env-worker",
        action="append",
        default=[],
        metavar="KEY:VALUE",
        help="set an environment variable for the workers only (repeatable)",
    )
    parser.add_argument(
        "--host-ip",
        help="address the scheduler announces (default: 127.0.0.1 for local; for ssh the "
        "tracker's guess of this machine's address)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="kill the whole job after this many seconds and exit with 124",
    )
    return parser


def parse_args(argv):
    """Options before `--`, the command after it; raises LaunchError with a one-line message."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        options, command = argv[:cut], argv[cut + 1 :]
    else:
        options, command = argv, []
    args = build_parser().parse_args(options)
    args.command = command
    if not command:
        raise LaunchError("no command given: put it after --, e.g. -n 2 -- python train.py")
    if args.num_workers < 1:
        raise LaunchError(f"-n/--num-workers must be at least 1, got {args.num_workers}")
    if args.num_servers is None:
        args.num_servers = args.num_workers
    if args.num_servers < 1:
        raise LaunchError(f"-s/--num-servers must be at least 1, got {args.num_servers}")
    if args.timeout is not None and args.timeout <= 0:
        raise LaunchError(f"--timeout must be positive, got {args.timeout:g}")
    if args.launcher == "ssh":
        if not args.hostfile:
            raise LaunchError("--launcher ssh needs a hostfile: -H HOSTFILE")
        if not os.path.isfile(args.hostfile):
            raise LaunchError(f"hostfile not found: {args.hostfile}")
        if not any(line.strip() for line in open(args.hostfile)):
            raise LaunchError(f"hostfile is empty: {args.hostfile}")
    elif args.hostfile or args.sync_dst_dir:
        raise LaunchError("-H/--hostfile and --sync-dst-dir are for --launcher ssh")
    if args.host_ip is None and args.launcher == "local":
        args.host_ip = "127.0.0.1"
    if args.launcher == "ssh":
        for word in args.command:
            _quote(word, "ssh")  # refuses what cannot pass through ssh's quoting
    args.env = _env_pairs(args.env, "--env")
    args.env_worker = _env_pairs(args.env_worker, "--env-worker")
    args.env_server = _env_pairs(args.env_server, "--env-server")
    return args


def _env_pairs(items, option):
    env = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise LaunchError(f"{option} wants KEY:VALUE, got {item!r}")
        env[key] = value
    return env


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


def _fail_job(args, exc_type, exc_value):
    """A tracker thread saw a process fail: report it in one line and end the job runner."""
    if isinstance(exc_value, subprocess.CalledProcessError):
        code = exc_value.returncode
    else:
        # dmlc_tracker.local: RuntimeError('Get nonzero return code=%d on %s %s' % (ret, cmd, env))
        found = re.search(r"return code=(-?\d+)", str(exc_value))
        code = int(found.group(1)) if found else 1
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
    print(f"{PROG}: error: {who} exited with code {code}; stopping the job", file=sys.stderr)
    sys.stderr.flush()
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
    dmlc.command = _role_prefix(args) + [_quote(word, args.launcher) for word in args.command]
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


def _group_alive(pgid):
    """Whether a process of group `pgid` still runs (zombies, which wait to be reaped by
    whoever adopted them, do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not os.path.isdir("/proc/self"):
        return True
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _kill_group(pgid):
    """SIGTERM the job's process group, then SIGKILL whatever is left after a grace period."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait(pid, timeout):
    """Wait for the job runner; its exit code, or None when `timeout` seconds passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def launch(args):
    """Run the job in a child process in its own session; its exit code (124 on timeout)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            run_job(args)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - the child must never return to the caller
            print(f"{PROG}: error: {exc}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    code = 1
    try:
        code = _wait(pid, args.timeout)
        if code is None:
            print(
                f"{PROG}: error: the job ran longer than --timeout {args.timeout:g} s; killed it",
                file=sys.stderr,
            )
            code = TIMEOUT_EXIT
        else:
            code = _exit_code(code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; killing the job", file=sys.stderr)
        code = 130
    except SystemExit as exc:
        code = exc.code
    finally:
        _kill_group(pid)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        signal.signal(signal.SIGTERM, previous)
    return code


def main(argv=None):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except LaunchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        import dmlc_tracker  # noqa: F401
    except ImportError:
        print(
            f"{PROG}: error: the dmlc_tracker package (shipped with the mxnet wheel) is missing",
            file=sys.stderr,
        )
        return 2
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
