"""Check a configuration before any data is read: misspelt plugin keys (a warning) and settings that cannot work
(``validate_config``, one-line ``UserInputError``)."""

import difflib
import glob
import os
from functools import lru_cache
from logging import getLogger

import recbole
import yaml
from recbole.evaluator.register import metrics_dict

from recbole_lamia.utils.errors import UserInputError
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
    from recbole_lamia.data.cold_start import COLD_START_DEFAULTS
    from recbole_lamia.tokenizer.item_tokenizer import TOKENIZER_DEFAULTS

    return frozenset(TOKENIZER_DEFAULTS) | frozenset(COLD_START_DEFAULTS) | _yaml_keys((PROPERTIES_DIR,))


def recbole_keys():
    """Every config key named in RecBole's own YAML files."""
    return _yaml_keys((os.path.join(os.path.dirname(recbole.__file__), "properties"),))


# Command-line arguments of RecBole's run_recbole.py and of run_recbole_lamia.py. RecBole's Config reads every
# ``--key=value`` in sys.argv as a config key, so these reach it too, although they are not config keys.
COMMAND_LINE_ARGUMENTS = frozenset({"model", "dataset", "config_files", "nproc", "ip", "port", "world_size",
                                    "group_offset", "debug", "resume", "leaderboard"})


def user_given_keys(config):
    """The keys the user set on a RecBole Config: config files, ``config_dict`` and the command line."""
    user_keys = set()
    for attribute in ("file_config_dict", "variable_config_dict", "cmd_config_dict"):
        user_keys.update(getattr(config, attribute, None) or {})
    return user_keys


def unknown_plugin_like_keys(config):
    """``[(key, suggestion)]`` for user-given keys that nobody defines but resemble a plugin key."""
    user_keys = user_given_keys(config)
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


def warn_ignored_tokenizer_keys(config, params, with_quantizer=True):
    """Log one warning naming the user-given tokenizer keys that ``params`` never reads (palette settings under
    ``item_embedding: sentence``, level options of another quantizer); return them. ``with_quantizer=False``: the
    model reads embeddings only, so no quantizer key is checked."""
    from recbole_lamia.tokenizer.item_tokenizer import ignored_tokenizer_keys

    ignored = ignored_tokenizer_keys(params, user_given_keys(config), with_quantizer=with_quantizer)
    if ignored:
        setting = f"item_embedding: {params['item_embedding']}" + (
            f", quantizer: {params['quantizer']}" if with_quantizer else "")
        getLogger().warning(f"{', '.join(ignored)} {'has' if len(ignored) == 1 else 'have'} no effect with "
                            f"{setting}; set item_embedding: palette for the palette's settings, or the quantizer "
                            "that reads the level option.")
    return ignored


def _has_cut_off(metric):
    """Whether RecBole reports ``metric`` (lower case) per top-k cut-off: the metrics computed from top-k lists."""
    needs = getattr(metrics_dict.get(metric), "metric_need", [])
    return "rec.topk" in needs or "rec.items" in needs


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(ok, key, value, allowed):
    if not ok:
        raise UserInputError(f"{key} must be {allowed}, got {value!r}.")


# Dropout-like settings of RecBole's and the plugin's models: probabilities in [0, 1).
_PROBABILITY_KEYS = ("hidden_dropout_prob", "attn_dropout_prob", "dropout_prob", "dropout_rate", "mask_ratio")


def validate_config(config):
    """Raise ``UserInputError`` (one line: the key, the value, what is allowed) for settings that cannot work.

    Cheap and run before any data is read: RecBole's training settings, the sequence and attention sizes of the
    models that have them, the evaluation settings, then the plugin's tokenizer settings and the model's own
    ``check_config``.
    """
    from recbole.utils import ModelType

    _require(_is_int(config["seed"]), "seed", config["seed"], "an integer")
    lr = config["learning_rate"]
    _require(_is_number(lr) and lr > 0, "learning_rate", lr, "a number > 0")
    _require(_is_number(config["weight_decay"] or 0) and (config["weight_decay"] or 0) >= 0, "weight_decay",
             config["weight_decay"], "a number >= 0")
    _require(_is_int(config["epochs"]) and config["epochs"] >= 0, "epochs", config["epochs"], "an integer >= 0")
    for key in ("train_batch_size", "eval_batch_size"):
        _require(_is_int(config[key]) and config[key] >= 1, key, config[key], "an integer >= 1")
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        length = config["MAX_ITEM_LIST_LENGTH"]
        _require(_is_int(length) and length >= 1, "MAX_ITEM_LIST_LENGTH", length, "an integer >= 1")
    for key in _PROBABILITY_KEYS:
        value = config[key]
        if value is not None:
            _require(_is_number(value) and 0 <= value < 1, key, value, "a probability in [0, 1)")
    heads, hidden = config["n_heads"], config["hidden_size"]
    if heads is not None and hidden is not None:
        _require(_is_int(heads) and heads >= 1, "n_heads", heads, "an integer >= 1")
        _require(_is_int(hidden) and hidden >= 1 and hidden % heads == 0, "hidden_size", hidden,
                 f"a positive multiple of n_heads ({heads})")
    topk = config["topk"]
    ks = topk if isinstance(topk, list) else [topk]
    _require(ks and all(_is_int(k) and k >= 1 for k in ks), "topk", topk, "a positive integer or a list of them")
    metrics = [m.lower() for m in (config["metrics"] or [])]
    valid_metric = str(config["valid_metric"] or "")
    name, _, k = valid_metric.lower().partition("@")
    # RecBole reports a metric of the top-k lists at a cut-off ("ndcg@10", never "ndcg"), others without ("gauc").
    cut_off_ok = (k.isdigit() and int(k) in ks) if _has_cut_off(name) else not k
    _require(name in metrics and cut_off_ok, "valid_metric", valid_metric,
             f"one of metrics {config['metrics']} at one of topk {ks} (e.g. {config['metrics'][0]}@{ks[0]})"
             if metrics else "one of the configured metrics")
    from recbole_lamia.data.cold_start import cold_start_settings

    cold_start_settings(config)
    model_class = getattr(config, "model_class", None)
    if hasattr(model_class, "check_config"):
        from recbole_lamia.tokenizer.item_tokenizer import tokenizer_params
        from recbole_lamia.tokenizer.text_encoder import check_text_encoder

        params = tokenizer_params(config)
        check_item_text_fields(config, params["item_text_fields"])
        check_text_encoder(params["text_encoder"], params["text_encoder_allow_download"])
        model_class.check_config(config)


def check_item_text_fields(config, fields):
    """Raise ``UserInputError`` when the dataset has no ``.item`` file, or ``fields`` are not in its header or not
    loaded by ``load_col``; reads only the header line."""
    name = config["dataset"]
    item_file = os.path.join(config["data_path"], f"{name}.item")
    if not os.path.isfile(os.path.join(config["data_path"], f"{name}.inter")):
        return  # to be downloaded, or split into benchmark files: the tokenizer checks the fields once loaded
    if not os.path.isfile(item_file):
        raise UserInputError(f"dataset {name} has no item file ({item_file}): {config['model']} reads item text.")
    with open(item_file, encoding="utf-8") as f:
        separator = config["field_separator"] or "\t"
        header = [column.split(":")[0] for column in f.readline().rstrip("\n").split(separator)]
    missing = [field for field in fields or [] if field not in header]
    if missing:
        raise UserInputError(f"item_text_fields {missing} are not in {item_file}; its fields are {header}.")
    load_col = config["load_col"]
    loaded = load_col.get("item") if isinstance(load_col, dict) else None
    unloaded = [field for field in fields or [] if loaded is not None and field not in loaded]
    if unloaded:
        raise UserInputError(f"item_text_fields {unloaded} are not loaded: add them to load_col's item list {loaded}.")
