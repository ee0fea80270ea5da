"""a2gluon launch -n WORKERS [-s SERVERS] -- COMMAND: run COMMAND as a parameter-server job
(a2gluon.launch runs it)."""

import argparse
import os
import re
import sys

from ..launch import PROG, STOP_TIMEOUT, LaunchError, _quote, launch


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise LaunchError(message)


def build_parser(prog=PROG):
    parser = _Parser(
        prog=prog,
        description="Start MXNet's parameter server (scheduler, servers, workers) and run "
        "COMMAND as every worker and server.",
        usage=f"{prog} -n WORKERS [-s SERVERS] [--launcher local|ssh] [-H HOSTFILE] [options] -- COMMAND ...",
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
    parser.add_argument(
        "--stop-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, SIGHUP or SIGINT, ask the workers to checkpoint and exit (SIGTERM to "
        "them only) and wait this long for them before terminating the servers and the "
        f"scheduler (default {STOP_TIMEOUT:g}); rank 0 must be able to write a checkpoint in that "
        "time. --launcher local only (ssh forwards no signals to the remote workers)",
    )
    return parser


def parse_args(argv, prog=PROG):
    """Options before `--`, the command after it; raises LaunchError with a one-line message."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        options, command = argv[:cut], argv[cut + 1 :]
    else:
        options, command = argv, []
    args = build_parser(prog).parse_args(options)
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
    if args.stop_timeout is not None and args.stop_timeout <= 0:
        raise LaunchError(f"--stop-timeout must be positive, got {args.stop_timeout:g}")
    if args.launcher == "ssh":
        if not args.hostfile:
            raise LaunchError("--launcher ssh needs a hostfile: -H HOSTFILE")
        if not os.path.isfile(args.hostfile):
            raise LaunchError(f"hostfile not found: {args.hostfile}")
        if not any(line.strip() for line in open(args.hostfile)):
            raise LaunchError(f"hostfile is empty: {args.hostfile}")
        if args.stop_timeout is not None:
            raise LaunchError(
                "--stop-timeout is for --launcher local: ssh forwards no signals, so the remote "
                "workers cannot be asked to checkpoint (send SIGTERM to them on their hosts)"
            )
    elif args.hostfile or args.sync_dst_dir:
        raise LaunchError("-H/--hostfile and --sync-dst-dir are for --launcher ssh")
    if args.stop_timeout is None:
        args.stop_timeout = STOP_TIMEOUT
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


def main(argv=None, prog=PROG):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, prog)
    except LaunchError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        import dmlc_tracker  # noqa: F401
    except ImportError:
        print(
            f"{prog}: error: the dmlc_tracker package (shipped with the mxnet wheel) is missing",
            file=sys.stderr,
        )
        return 2
    return launch(args)
