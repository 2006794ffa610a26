"""Warn about config keys that look like misspelt plugin keys (``palete_size`` -> ``palette_size``)."""

import difflib
import glob
import os
from functools import lru_cache
from logging import getLogger

import recbole
import yaml

from recbole_lamia.utils.registration import PROPERTIES_DIR


@lru_cache(maxsize=None)  # one entry per folder tuple: the plugin's and RecBole's
def _yaml_keys(pattern_dirs):
    keys = set()
    for directory in pattern_dirs:
        for file in glob.glob(os.path.join(directory, "**", "*.yaml"), recursive=True):
            with open(file, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
            if isinstance(data, dict):
                keys.update(data)
    return frozenset(keys)


def plugin_keys():
    """Every config key this plugin defines (tokenizer defaults and the plugin's YAML files)."""
    from recbole_lamia.tokenizer.item_tokenizer import TOKENIZER_DEFAULTS

    return frozenset(TOKENIZER_DEFAULTS) | _yaml_keys((PROPERTIES_DIR,))


def recbole_keys():
    """Every config key named in RecBole's own YAML files."""
    return _yaml_keys((os.path.join(os.path.dirname(recbole.__file__), "properties"),))


# Command-line arguments of RecBole's run_recbole.py and of run_recbole_lamia.py. RecBole's Config reads every
# ``--key=value`` in sys.argv as a config key, so these reach it too, although they are not config keys.
COMMAND_LINE_ARGUMENTS = frozenset({"model", "dataset", "config_files", "nproc", "ip", "port", "world_size",
                                    "group_offset", "debug", "resume", "leaderboard"})


def unknown_plugin_like_keys(config):
    """``[(key, suggestion)]`` for user-given keys that nobody defines but resemble a plugin key."""
    user_keys = set()
    for attribute in ("file_config_dict", "variable_config_dict", "cmd_config_dict"):
        user_keys.update(getattr(config, attribute, None) or {})
    known = (plugin_keys() | recbole_keys() | COMMAND_LINE_ARGUMENTS
             | set(getattr(config, "internal_config_dict", {}) or {}))
    findings = []
    for key in sorted(user_keys - known):
        match = difflib.get_close_matches(key, sorted(plugin_keys()), n=1, cutoff=0.75)
        if match:
            findings.append((key, match[0]))
    return findings


def warn_unknown_plugin_keys(config):
    """Log a warning for each misspelt-looking plugin key; return the findings."""
    findings = unknown_plugin_like_keys(config)
    for key, suggestion in findings:
        getLogger().warning(f"Unknown config key '{key}' is ignored; did you mean '{suggestion}'?")
    return findings
