"""``KEY=VALUE`` config overrides from the command line, with values read as YAML (as RecBole reads its files)."""

import yaml


def parse_value(text):
    """``"3"`` -> 3, ``"[1, 2]"`` -> [1, 2], ``"False"`` -> False; text YAML cannot read stays a string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items, option="--set"):
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; an item without ``=`` stops with a message naming ``option``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{option} expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value)
    return overrides


def parse_pairs(text, option="--variant"):
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}`` (one comma-separated list; empty text gives ``{}``)."""
    return parse_overrides([item for item in text.split(",") if item.strip()], option)
