"""Fit TIGER's RQ-VAE tokenizer on Amazon Beauty sentence embeddings and report how well it tokenizes.

Builds the TIGER dataset through RecBole (Config + create_dataset), which embeds the item texts, fits
the RQ-VAE and caches both; then writes

  results/rqvae_beauty.json      fit time, code usage and dead codes per level, collision rate before
                                 the 4th (disambiguation) token, reconstruction error, per-epoch history
  results/rqvae_beauty_loss.png  the training-loss curves and code usage per epoch

    python benchmarks/rqvae_beauty.py --data_path=../shared/datasets

A second run loads the codes from the cache (the JSON then says ``"cached": true`` and keeps the
original fit time); ``--fresh`` refits. ``--config_files`` and ``--set key=value`` adapt it to other
data, e.g. a quick check on a small dataset with ``--set rqvae_epochs=5``.
"""

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_dataset(args):
    """The TIGER dataset (runs or loads the tokenizer) and the config it was built with."""
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.utils import init_logger, init_seed

    import recbole_lamia  # noqa: F401  (registers TIGER)
    from recbole_lamia.utils.overrides import parse_overrides

    config_dict = {"data_path": args.data_path, "show_progress": False, "use_gpu": False, "state": "INFO",
                   **parse_overrides(args.set)}
    if args.fresh:
        config_dict["semantic_id_cache_dir"] = os.path.join(ROOT, "saved", "rqvae_benchmark_semantic_ids",
                                                            str(int(time.time())))
    config = Config(model="TIGER", dataset=args.dataset, config_file_list=args.config_files or None,
                    config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    return config, create_dataset(config)


def summarise(config, dataset, seconds):
    """The JSON-able result: timings, code usage, dead codes, collisions and the training history."""
    report = dataset.semantic_id_report
    codes = report["codes"]
    diagnostics, collisions, history = codes["diagnostics"], codes["collisions"], codes["history"]
    sizes = diagnostics["codebook_sizes"]
    usage = diagnostics["code_usage_per_level"]
    ids = dataset.item_semantic_ids[1:]
    return {
        "dataset": config["dataset"],
        "n_items": len(ids),
        "embedding_shape": report["embedding_shape"],
        "settings": {key: config[key] for key in ("item_embedding", "text_encoder", "quantizer", "codebook_size",
                                                 "rq_levels", "collision_handling", "seed")
                     if key in config},
        "rqvae_settings": {key: config[key] for key in config.final_config_dict if str(key).startswith("rqvae_")},
        "cached": bool(codes.get("cached")),
        "fit_seconds": codes["seconds"],
        "embedding_seconds": report["embedding"].get("seconds"),
        "wall_seconds_this_run": round(seconds, 1),
        "codebook_sizes": sizes,
        "code_usage_per_level": usage,
        "dead_codes_per_level": [int(k - u) for k, u in zip(sizes, usage)],
        "dead_codes_per_level_last_epoch": history[-1]["dead_codes_per_level"] if history else None,
        "collision_rate_before_extra_token": collisions["collision_rate_before"],
        "collision_rate_after": collisions["collision_rate_after"],
        "collision_handling": collisions["collision_handling"],
        "id_length": int(ids.shape[1]),
        "largest_group_sharing_a_code": int(ids[:, -1].max()) + 1 if ids.shape[1] > len(sizes) else 1,
        "reconstruction_error": diagnostics["reconstruction_error"],
        "history": history,
    }


def plot_history(history, path):
    """Loss curves (log scale) and code usage per level, by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, usage_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("loss", "total"), ("reconstruction_loss", "reconstruction"),
                       ("quantization_loss", "codebook + commitment")):
        loss_ax.plot(epochs, [h[key] for h in history], label=label)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss (per item)")
    loss_ax.set_title("RQ-VAE training loss")
    loss_ax.legend()
    for level in range(len(history[0]["code_usage_per_level"])):
        usage_ax.plot(epochs, [h["code_usage_per_level"][level] for h in history], label=f"level {level + 1}")
    usage_ax.set_xlabel("epoch")
    usage_ax.set_ylabel("codes used in the epoch")
    usage_ax.set_title("Code usage per level")
    usage_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=os.path.join(ROOT, "..", "shared", "datasets"))
    parser.add_argument("--config_files", nargs="*", default=[], help="extra RecBole YAML files")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--fresh", action="store_true", help="refit in a new cache folder instead of loading")
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "results"))
    parser.add_argument("--name", default="rqvae_beauty", help="output file stem")
    args = parser.parse_args(argv)
    from recbole_lamia.utils.files import write_json_atomic

    start, load_before = time.time(), os.getloadavg()
    config, dataset = build_dataset(args)
    result = summarise(config, dataset, time.time() - start)
    # Timings on a shared machine mean little without the load they were measured under.
    result["machine"] = {"cpu_count": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                         "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    json_path = os.path.join(args.output_dir, f"{args.name}.json")
    write_json_atomic(json_path, result, indent=2)
    if result["history"]:
        plot_history(result["history"], os.path.join(args.output_dir, f"{args.name}_loss.png"))
    shown = {k: v for k, v in result.items() if k != "history"}
    print(json.dumps(shown, indent=2))
    return result


if __name__ == "__main__":
    main()
