"""Entry points that wrap RecBole's quick start with the plugin registered."""

import contextlib
import importlib
import os
import pkgutil
import urllib.error

from recbole.utils import get_model

from recbole_lamia.utils.errors import UserInputError, first_line
from recbole_lamia.utils.registration import registered_models

_SUBMODULES = ("general_recommender", "context_aware_recommender", "sequential_recommender",
               "knowledge_aware_recommender", "exlib_recommender")


def available_models():
    """Names of every model ``get_model`` can build: the plugin's and RecBole's own."""
    names = set(registered_models())
    for submodule in _SUBMODULES:
        try:
            package = importlib.import_module(f"recbole.model.{submodule}")
        except ImportError:  # exlib_recommender needs xgboost and lightgbm
            continue
        for info in pkgutil.iter_modules(package.__path__):
            try:
                module = importlib.import_module(f"recbole.model.{submodule}.{info.name}")
            except Exception:  # optional dependencies of some RecBole models (e.g. xgboost)
                continue
            names.update(n for n in dir(module) if n.lower() == info.name and isinstance(getattr(module, n), type))
    return sorted(names)


def check_model_name(model):
    """Raise ValueError listing the available models when ``model`` is unknown."""
    try:
        get_model(model)
    except (ValueError, ImportError, AttributeError):
        raise UserInputError(f"unknown model '{model}'. Available models: {', '.join(available_models())}") from None


def check_run(model, dataset, config_file_list=None, config_dict=None):
    """Raise ``UserInputError`` (one line) for a run that cannot work, before any data is read: an unreadable
    config file, a dataset that is neither in its ``data_path``, nor shipped with the plugin, nor one RecBole can
    download, and settings ``validate_config`` refuses."""
    import yaml
    from recbole.config import Config

    from recbole_lamia.data.local_datasets import check_dataset_available
    from recbole_lamia.utils.config_check import validate_config

    for file in config_file_list or []:
        if not os.path.isfile(file):
            raise UserInputError(f"config file not found: {file}")
        with open(file, encoding="utf-8") as f:
            try:
                settings = yaml.safe_load(f)
            except (yaml.YAMLError, UnicodeDecodeError):
                continue  # reported below, as RecBole's own loader finds it
        if not isinstance(settings, dict):  # RecBole would fail on it with a TypeError
            found = "nothing" if settings is None else f"a {type(settings).__name__}"
            raise UserInputError(f"config file {file} holds no settings: it must be a YAML mapping of keys to "
                                 f"values (key: value lines), and it holds {found}.")
    try:
        config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    except yaml.YAMLError as err:
        raise UserInputError(f"a config file is not valid YAML: {first_line(err)}") from None
    except (ValueError, TypeError) as err:  # RecBole's own checks of eval_args, topk, metrics and the like
        raise UserInputError(first_line(err)) from None
    data_path = os.path.dirname(os.path.normpath(config["data_path"]))  # RecBole appended the dataset name
    check_dataset_available(dataset, data_path, config["benchmark_filename"])
    validate_config(config)


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, resume=False):
    """Train and evaluate ``model`` on ``dataset`` as RecBole's ``run_recbole`` does, saving a resume point after
    every validated epoch (``recbole_lamia.trainer.resume``); ``resume=True`` continues an interrupted run of the
    same settings from its last one. Returns RecBole's result dict.

    With ``cold_start_ratio`` > 0 in the config, a seeded share of items is kept out of training
    (``recbole_lamia.data.cold_start``) and the result also holds ``cold_test_result``, the test metrics over the
    ``cold_test_cases`` test cases whose target is one of those items.

    A failed download of a RecBole dataset (no network) becomes a ``UserInputError``.
    """
    from logging import getLogger

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_logger, init_seed

    from recbole_lamia.data.cold_start import cold_start_build, cold_start_settings, cold_test_loader, select_cold_items
    from recbole_lamia.trainer import ResumePoints
    from recbole_lamia.utils.distributed import is_distributed, share_from_rank_zero

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    # RecBole makes these folders with a check-then-create that races when several ranks start at once.
    for folder in (os.path.join("log", config["model"]), config["checkpoint_dir"]):
        os.makedirs(folder, exist_ok=True)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    try:
        data = create_dataset(config)
    except urllib.error.URLError as err:
        raise UserInputError(f"dataset '{dataset}' is not on this machine and RecBole could not download it "
                             f"({err.reason}). Put its atomic files in <data_path>/{dataset}/ and pass "
                             "--data_path=<data_path>.") from None
    logger.info(data)
    cold_ratio, cold_seed = cold_start_settings(config)
    cold_items = select_cold_items(data, cold_ratio, cold_seed) if cold_ratio > 0 else []
    with cold_start_build(cold_items) if len(cold_items) else contextlib.nullcontext() as split_figures:
        train_data, valid_data, test_data = data_preparation(config, data)
    if len(cold_items):
        logger.info(f"cold-start split: {len(cold_items)} items never in training ({split_figures})")
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(recommender)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, recommender)
    trainer.saved_model_file = share_from_rank_zero(trainer.saved_model_file)  # RecBole names it by the time
    resume_points = ResumePoints(trainer, train_data)
    start_epoch = resume_points.restore() if resume else 0
    if resume and start_epoch >= trainer.epochs:
        # Nothing left to train (the run had stopped early, or reached its epochs). RecBole's fit would first
        # overwrite the best checkpoint with the current weights, so it is not called.
        trainer.eval_collector.data_collect(train_data)
        best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
    else:
        best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=saved,
                                                          show_progress=config["show_progress"],
                                                          callback_fn=resume_points.save if saved else None)
    if is_distributed():
        torch.distributed.barrier()  # rank 0 has written the best checkpoint every rank loads next
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info(f"best valid : {best_valid_result}")
    logger.info(f"test result: {test_result}")
    result = {"best_valid_score": best_valid_score, "valid_score_bigger": config["valid_metric_bigger"],
              "best_valid_result": best_valid_result, "test_result": test_result}
    if len(cold_items):
        cold_loader, cold_cases = cold_test_loader(config, test_data, cold_items)
        result["cold_test_cases"] = cold_cases
        if cold_loader is not None:  # the best model is loaded already
            result["cold_test_result"] = trainer.evaluate(cold_loader, load_best_model=False, show_progress=False)
            logger.info(f"cold test result ({cold_cases} test cases): {result['cold_test_result']}")
    return result


def format_summary(model, dataset, result):
    """Valid and test Recall@10 and NDCG@10, one line each (and the cold-start test cases', when measured)."""
    lines = [f"{model} on {dataset}:"]
    for split in ("best_valid_result", "test_result", "cold_test_result"):
        if split == "cold_test_result" and split not in result:
            continue
        values = result.get(split) or {}
        shown = ", ".join(f"{k}={values[k]:.4f}" for k in ("recall@10", "ndcg@10") if k in values)
        lines.append(f"  {split.replace('best_', '').replace('_result', '')}: {shown}")
    return "\n".join(lines)
