"""Configuration: default_config.yaml, an optional --config_path YAML, then --key=value overrides.

The YAML files follow the model zoo layout: the first document holds the values, an optional second
one a help line per key (shown by ``-h``), an optional third one the allowed choices per key.
Nothing is parsed at import time: an entry script calls :func:`load_config` once and passes the
resulting :class:`Config` down.
"""
import argparse
import ast
import difflib
import os
import sys

import yaml

from src.config_checks import check_values
from src.feature_maps import derive_layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "default_config.yaml")

# Older model-zoo spellings accepted on the command line, mapped to today's key.
ALIASES = {"checkpoint_path_eval": "checkpoint_file_path"}


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line."""


class Config:
    """Attribute access over a flat dict of settings (nested dicts become Configs). ``given`` names the keys
    the user set (command line or ``--config_path``), as opposed to defaults."""

    def __init__(self, values, given=()):
        for key, value in values.items():
            setattr(self, key, Config(value) if isinstance(value, dict) else value)
        self._given = frozenset(given)

    def settings(self):
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def to_dict(self):
        return {k: (v.to_dict() if isinstance(v, Config) else v) for k, v in self.settings().items()}

    def get(self, key, default=None):
        return getattr(self, key, default)

    def given_keys(self) -> frozenset:
        """The keys set on the command line or in ``--config_path`` (not by default_config.yaml)."""
        return self._given

    def replace(self, **changes):
        """A copy with some keys changed (unknown keys are an error, as on the command line)."""
        values = self.to_dict()
        for key, value in changes.items():
            if key not in values:
                raise ConfigError(unknown_key_message(key, values))
            values[key] = value
        return Config(values, self._given)

    def with_settings(self, changes):
        """:meth:`replace` followed by the checks and the layout derivation that load_config applies, for
        settings that come from elsewhere (a checkpoint); a problem is a ConfigError."""
        values = self.replace(**changes).to_dict()
        problem = check_values(values)
        if problem:
            raise ConfigError(problem)
        try:
            return Config(derive_layout(values), self._given)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def __repr__(self):
        return "Config(%s)" % ", ".join("%s=%r" % kv for kv in sorted(self.settings().items()))


def read_yaml(path):
    """Return (values, help, choices) from a model-zoo style YAML file of one to three documents."""
    if not os.path.isfile(path):
        raise ConfigError("config file not found: %s" % path)
    with open(path, encoding="utf-8") as stream:
        try:
            docs = [d for d in yaml.safe_load_all(stream)]
        except yaml.YAMLError as err:
            raise ConfigError("%s: not valid YAML: %s" % (path, str(err).replace("\n", " "))) from None
    docs = [d or {} for d in docs] + [{}, {}, {}]
    for doc in docs[:3]:
        if not isinstance(doc, dict):
            raise ConfigError("%s: each YAML document must be a mapping of key: value" % path)
    return docs[0], docs[1], docs[2]


def unknown_key_message(key, known):
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = ("; did you mean %s?" % " or ".join("--" + c for c in close)) if close else ""
    return "unknown config key '%s'%s (python train.py -h lists every key)" % (key, hint)


def type_name(value):
    return "none" if value is None else type(value).__name__


def coerce(key, text, default, choices=None):
    """Turn the command-line text for ``key`` into a value of the same type as its default."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ConfigError("--%s expects True or False, got '%s'" % (key, text))
        value = lowered in ("true", "1")
    elif isinstance(default, (int, float)):
        try:
            number = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError("--%s expects a number, got '%s'" % (key, text))
        if isinstance(default, int) and not float(number).is_integer():
            raise ConfigError("--%s expects a whole number, got '%s'" % (key, text))
        value = type(default)(number)
    elif isinstance(default, (list, tuple)):
        value = parse_list(key, text)
    elif default is None:
        value = yaml.safe_load(text)
    else:
        value = text
    if choices and value not in choices:
        raise ConfigError("--%s must be one of %s, got '%s'" % (key, ", ".join(map(str, choices)), text))
    return value


def parse_list(key, text):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, list):
        raise ConfigError("--%s expects a list such as [300,300], got '%s'" % (key, text))
    return value


def check_file_value(key, value, default, path):
    """A key set in a --config_path file must keep the type of its default."""
    if default is None or value is None:
        return
    numeric = (int, float)
    if isinstance(default, bool) != isinstance(value, bool):
        ok = False
    elif isinstance(default, numeric) and isinstance(value, numeric):
        ok = not (isinstance(default, int) and isinstance(value, float) and not value.is_integer())
    else:
        ok = isinstance(value, type(default)) or (isinstance(default, list) and isinstance(value, tuple))
    if not ok:
        raise ConfigError("%s: key '%s' expects %s, got %s %r"
                          % (path, key, type_name(default), type_name(value), value))


def split_argv(argv):
    """Pull --config_path out of argv (it decides which file supplies the defaults)."""
    config_path, rest = None, []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--config_path="):
            config_path = arg.split("=", 1)[1]
        elif arg == "--config_path":
            config_path = next(args, None)
            if config_path is None:
                raise ConfigError("--config_path expects a YAML file")
        else:
            rest.append(arg)
    return config_path, rest


def build_parser(values, helps, choices, description):
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--config_path", help="YAML file whose keys override default_config.yaml")
    for key in values:
        default = values[key]
        parser.add_argument("--" + key, dest=key, default=None, metavar=type_name(default).upper(),
                            help="%s (default: %r)" % (helps.get(key, ""), default))
    for old, new in ALIASES.items():
        parser.add_argument("--" + old, dest=new, default=None, help="same as --%s" % new)
    return parser


def normalise_argv(argv):
    """Accept '--key value' and '--key=value'; map the old spellings of renamed keys."""
    out = []
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            out.append("--%s=%s" % (ALIASES.get(key, key), value))
        elif arg.startswith("--"):
            out.append("--" + ALIASES.get(arg[2:], arg[2:]))
        else:
            out.append(arg)
    return out


def load_config(argv=None, description: str = "SSD for MindSpore", defaults_path: str = DEFAULT_CONFIG) -> "Config":
    """Merge default_config.yaml, --config_path and --key=value into one Config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, rest = split_argv(argv)
    values, helps, choices = read_yaml(defaults_path)
    if config_path:
        file_values, file_helps, file_choices = read_yaml(config_path)
        for key, value in file_values.items():
            if key not in values:
                raise ConfigError("%s: %s" % (config_path, unknown_key_message(key, values)))
            check_file_value(key, value, values[key], config_path)
        values.update(file_values)
        helps.update(file_helps)
        choices.update(file_choices)
    parser = build_parser(values, helps, choices, description)
    rest = normalise_argv(rest)
    for arg in rest:
        if arg.startswith("--") and arg not in ("--help",):
            key = arg[2:].split("=", 1)[0]
            if key not in values and key not in ALIASES and key != "config_path":
                raise ConfigError(unknown_key_message(key, values))
    args, extra = parser.parse_known_args(rest)
    if extra:
        raise ConfigError("unexpected argument '%s' (options are written --key=value)" % extra[0])
    given = set(file_values) if config_path else set()
    for key, text in vars(args).items():
        if text is not None and key != "config_path":
            values[key] = coerce(key, text, values[key], choices.get(key))
            given.add(key)
    if "checkpoint_path" not in given:
        values["checkpoint_path"] = os.path.join(values["output_path"], "checkpoint")
    for key, allowed in choices.items():
        if key in values and values[key] not in allowed:
            raise ConfigError("%s must be one of %s, got '%s'" % (key, ", ".join(map(str, allowed)), values[key]))
    problem = check_values(values)
    if problem:
        raise ConfigError(problem)
    try:
        values = derive_layout(values)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    values["config_path"] = os.path.abspath(config_path) if config_path else defaults_path
    return Config(values, given)


def quiet_framework(verbose: bool) -> None:
    """Hide MindSpore's own warning lines unless ``verbose``: they are about its graph compiler, not the
    user's run, and would bury the loss lines. Works when called before MindSpore is imported (entry
    scripts import it only after parsing the config); a ``GLOG_v`` in the environment wins."""
    if not verbose:
        os.environ.setdefault("GLOG_v", "3")


def load_config_or_exit(argv=None, description: str = "SSD for MindSpore") -> "Config":
    """load_config for entry scripts: a configuration error is one line on stderr and exit status 2;
    MindSpore's log level follows ``verbose``."""
    try:
        cfg = load_config(argv, description)
    except ConfigError as err:
        print("error: %s" % err, file=sys.stderr)
        sys.exit(2)
    quiet_framework(cfg.get("verbose", False))
    return cfg
