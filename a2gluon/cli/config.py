"""Recipe files (configs/*.yaml): YAML whose keys are a command's flag names, with dashes or
underscores.  They are read as the command's defaults, so flags given on the command line
override them (``--config FILE`` anywhere on the line)."""

import argparse

import yaml


def config_defaults(parser, path):
    """{dest: value} from the recipe at `path`, checked against `parser`'s flags (name, type,
    choices); parser.error (one line, exit 2) for an unreadable file or a bad key or value."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as err:
        parser.error(f"--config {path}: {err.strerror or err}")
    except yaml.YAMLError as err:
        parser.error(f"--config {path} is not valid YAML ({str(err).splitlines()[0]})")
    if data is None:
        return {}
    if not isinstance(data, dict):
        parser.error(f"--config {path} must be a mapping of flag names to values")
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    out = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        action = actions.get(dest)
        if action is None:
            parser.error(f"--config {path}: {key!r} is not a flag of {parser.prog} (see --help)")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                parser.error(f"--config {path}: {key} takes true or false, got {value!r}")
        elif value is not None and action.type is not None:
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                parser.error(f"--config {path}: {key} takes a {action.type.__name__}, got {value!r}")
        if action.choices is not None and value is not None and value not in action.choices:
            parser.error(f"--config {path}: {key} must be one of {', '.join(map(str, action.choices))}")
        out[dest] = value
    return out


def parse_with_config(parser, argv):
    """parser.parse_args(argv) with the defaults of the --config recipe in argv, if any."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**config_defaults(parser, known.config))
    return parser.parse_args(argv)
