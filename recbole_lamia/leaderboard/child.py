"""One phase of one leaderboard row: build the data, train with the leaderboard trainer, evaluate.

The runner starts it as ``python -m recbole_lamia.leaderboard.child <spec.json>`` so that each row has its
own process (peak memory per row; a crash does not end the leaderboard). RecBole's ``Config`` also reads
``sys.argv``, so every setting arrives in the spec's ``config_dict`` and ``sys.argv`` is cleared first.
The result (a flat dict of row columns) is written to ``spec["result_file"]``; a failure writes a result
with ``status: error``, the message and the traceback.
"""

import contextlib
import json
import math
import os
import resource
import sys
import time
import traceback

from recbole_lamia.utils.files import write_json_atomic

FINISHED = ("early_stopped", "budget", "max_epochs")
PROGRESS_PREFIX = "[leaderboard]"


def peak_rss_gb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3)


def device_name(config):
    import torch

    device = torch.device(config["device"])
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({torch.get_num_threads()} threads)"


def resolve_auto_features(config, dataset):
    """``selected_features: auto`` (FDSA): the categorical item fields among ``item_text_fields``.

    A token or token-sequence field counts as categorical when it has fewer distinct values than half the
    items (so brand and categories do, a per-item title does not).
    """
    if config["selected_features"] != "auto":
        return None
    import torch
    from recbole.utils import FeatureType

    item_feat = dataset.item_feat
    if item_feat is None:
        raise ValueError("selected_features: auto needs item features; this dataset has none")
    candidates = config["item_text_fields"] or [f for f in item_feat.columns if f != dataset.iid_field]
    chosen = []
    for field in candidates:
        if field not in item_feat.columns or dataset.field2type[field] not in (FeatureType.TOKEN,
                                                                               FeatureType.TOKEN_SEQ):
            continue
        values = item_feat[field][1:]
        distinct = len(torch.unique(values, dim=0)) if values.dim() > 1 else len(torch.unique(values))
        if distinct < 0.5 * len(values):
            chosen.append(field)
    if not chosen:
        raise ValueError(f"selected_features: auto found no categorical token field among {list(candidates)}; "
                         "set selected_features explicitly")
    config["selected_features"] = chosen
    return chosen


def semantic_id_columns(dataset):
    """Tokenizer fit time, code usage, collision rate and level NMI from ``dataset.semantic_id_report``, if any."""
    report = getattr(dataset, "semantic_id_report", None)
    if not report:
        return {}
    emb, codes = report.get("embedding") or {}, report.get("codes") or {}
    diag, coll = codes.get("diagnostics") or {}, codes.get("collisions") or {}
    usage = diag.get("code_usage_ratio_per_level") or []
    ids = getattr(dataset, "item_semantic_ids", None)
    return {
        "tokenizer_seconds": round(float(emb.get("seconds") or 0.0) + float(codes.get("seconds") or 0.0), 2),
        "tokenizer_cached": bool(emb.get("cached")) and bool(codes.get("cached")),
        "code_usage": round(sum(usage) / len(usage), 4) if usage else None,
        "code_usage_per_level": "/".join(f"{u:.3f}" for u in usage),
        "collision_rate": coll.get("collision_rate_before", diag.get("collision_rate")),
        "collision_handling": coll.get("collision_handling"),
        "level_nmi": diag.get("mean_level_nmi"),
        "semantic_id_length": int(ids.shape[1]) if ids is not None else None,
    }


def _metrics(result, prefix, keys=("recall@5", "recall@10", "ndcg@5", "ndcg@10")):
    result = result or {}
    return {f"{prefix}{k}": float(result[k]) if k in result else math.nan for k in keys}


@contextlib.contextmanager
def clean_argv():
    """RecBole's Config parses ``--key=value`` from sys.argv; hide the caller's arguments."""
    saved = sys.argv
    sys.argv = sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = saved


def phase_config(spec, **extra):
    """RecBole ``Config`` of a phase spec (``config_dict`` plus ``extra``), seeded as the phase trains it."""
    from recbole.config import Config
    from recbole.utils import init_seed

    with clean_argv():
        config = Config(model=spec["model"], dataset=spec["dataset"], config_file_list=spec.get("config_files"),
                        config_dict=dict(spec["config_dict"], **extra))
    init_seed(config["seed"], config["reproducibility"])
    return config


def phase_data_and_model(config, dataset, cold, split_stats=None):
    """``(cold_items, use_cold_split, (train, valid, test), model)`` of a phase, built as its training run built them.

    ``cold`` is the spec's ``cold_start`` dict: with a ratio, the seeded cold items are drawn, and with
    ``train_without`` the training split is rebuilt without them (``cold_start.py``).
    """
    import numpy as np
    from recbole.data import data_preparation
    from recbole.utils import get_model, init_seed

    from recbole_lamia.data.cold_start import cold_start_build, select_cold_items

    ratio = float(cold.get("ratio") or 0.0)
    cold_items = select_cold_items(dataset, ratio, cold.get("seed", config["seed"])) if ratio > 0 else np.zeros(0)
    use_cold_split = bool(cold.get("train_without")) and len(cold_items) > 0
    with cold_start_build(cold_items, split_stats) if use_cold_split else contextlib.nullcontext():
        loaders = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    resolve_auto_features(config, loaders[0]._dataset)
    model = get_model(config["model"])(config, loaders[0]._dataset).to(config["device"])
    return cold_items, use_cold_split, loaders, model


def run_phase(spec, progress=print):
    """Train and evaluate one phase; return the result columns. Raises on failure."""
    import numpy as np
    import torch
    from recbole.data import create_dataset
    from recbole.utils import get_trainer, init_logger

    import recbole_lamia  # noqa: F401  (registers LAMIA and TIGER)
    from recbole_lamia.data.cold_start import cold_set_hash, cold_test_loader
    from recbole_lamia.leaderboard.trainer import leaderboard_trainer
    from recbole_lamia.quick_start import check_model_name

    check_model_name(spec["model"])  # "unknown model 'X'. Available models: ..." before any slow work
    started = time.time()
    run_dir = spec["run_dir"]
    os.makedirs(run_dir, exist_ok=True)
    label = f"{spec['row']} [{spec['phase']}]"
    config = phase_config(spec, checkpoint_dir=run_dir)
    if spec.get("isolated"):
        init_logger(config)
    progress(f"{label}: building the {spec['dataset']} dataset for {spec['model']}")
    t0 = time.time()
    dataset = create_dataset(config)
    dataset_seconds = time.time() - t0

    cold = spec.get("cold_start") or {}
    split_stats = {}
    cold_items, use_cold_split, (train_data, valid_data, test_data), model = phase_data_and_model(
        config, dataset, cold, split_stats)
    trainer_class = leaderboard_trainer(get_trainer(config["MODEL_TYPE"], config["model"]))
    trainer = trainer_class(config, model)
    budget = spec.get("budget_seconds")
    trainer.setup_leaderboard(run_dir, budget_seconds=budget, label=label, fingerprint=spec.get("fingerprint", ""),
                              accepted_fingerprints=spec.get("accepted_fingerprints"), progress=progress,
                              interrupt_after_epoch=spec.get("interrupt_after_epoch"),
                              hard_interrupt=bool(spec.get("isolated")))
    resumed = trainer.resume() if spec.get("resume", True) else None
    if resumed is None and os.path.exists(trainer.saved_model_file):
        os.remove(trainer.saved_model_file)  # a best checkpoint of an earlier, discarded attempt
    progress(f"{label}: training {spec['model']} ({sum(p.numel() for p in model.parameters()):,} parameters, "
             f"{len(train_data.dataset)} training samples) on {device_name(config)}"
             + (f", resuming at epoch {resumed + 1}" if resumed is not None else "")
             + (f", budget {budget / 60:.1f} min" if budget else ""))
    trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])

    has_best = os.path.exists(trainer.saved_model_file)
    t0 = time.time()
    test_result = trainer.evaluate(test_data, load_best_model=has_best, show_progress=False)
    eval_seconds = time.time() - t0
    cold_result, cold_cases = None, 0
    if cold.get("evaluate") and len(cold_items):
        loader, cold_cases = cold_test_loader(config, test_data, cold_items)
        if loader is not None:
            cold_result = trainer.evaluate(loader, load_best_model=False, show_progress=False)

    valid_metric = config["valid_metric"].lower()
    best_valid = (trainer.best_valid_result or {}).get(valid_metric, math.nan)
    row = {
        "model": spec["model"],
        "status": trainer.stop_reason,
        **_metrics(test_result, "test_"),
        f"best_valid_{valid_metric}": float(best_valid),
        "epochs_run": trainer.epochs_done,
        "max_epochs": config["epochs"],
        "best_epoch": None if trainer.best_epoch is None else trainer.best_epoch + 1,
        "resumed_from_epoch": resumed,
        "train_seconds": round(trainer.train_seconds, 2),
        "epoch_seconds": round(float(np.mean(trainer.epoch_seconds)), 3) if trainer.epoch_seconds else None,
        "valid_seconds": round(float(np.mean([v for v in trainer.valid_seconds if v])), 3)
        if any(trainer.valid_seconds) else None,
        "eval_seconds": round(eval_seconds, 3),
        "dataset_seconds": round(dataset_seconds, 2),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "peak_rss_gb": peak_rss_gb(),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1024 ** 3, 3) if torch.cuda.is_available() else None,
        "device": device_name(config),
        "seed": config["seed"],
        "max_minutes": round(budget / 60, 3) if budget else None,
        "train_samples": len(train_data.dataset),
        "test_cases": len(test_data.dataset),
        "cold_items": len(cold_items),
        "cold_set": cold_set_hash(dataset, cold_items) if len(cold_items) else None,
        "cold_train_split": use_cold_split,
        "phase_seconds": round(time.time() - started, 1),
        "error": "",
        **semantic_id_columns(dataset),
    }
    if split_stats:
        row["cold_removed_train_samples"] = split_stats["train_samples_before"] - split_stats["train_samples_after"]
    if config["selected_features"] is not None and spec["model"] == "FDSA":
        row["selected_features"] = ",".join(config["selected_features"])
    if cold.get("evaluate"):
        row["cold_test_cases"] = cold_cases
        row.update(_metrics(cold_result, "cold_", keys=("recall@10", "ndcg@10")))
    return row


def run_phase_safely(spec, progress=print):
    """``run_phase``, with a failure turned into an error result (``spec["threads"]``: torch CPU threads)."""
    import torch

    previous_threads = torch.get_num_threads()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    try:
        return run_phase(spec, progress=progress)
    except Exception as err:  # noqa: BLE001  (any failure becomes the row's error message)
        message = f"{type(err).__name__}: {err}".strip()
        return {"model": spec.get("model"), "status": "error", "error": message,
                "traceback": traceback.format_exc(), "peak_rss_gb": peak_rss_gb()}
    finally:
        torch.set_num_threads(previous_threads)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    spec["isolated"] = True

    def progress(message):
        print(f"{PROGRESS_PREFIX} {message}", flush=True)

    result = run_phase_safely(spec, progress=progress)
    if result.get("traceback"):
        print(result["traceback"], file=sys.stderr, flush=True)
    write_json_atomic(spec["result_file"], result)
    return 0 if result.get("status") in FINISHED else 1


if __name__ == "__main__":
    sys.exit(main())
