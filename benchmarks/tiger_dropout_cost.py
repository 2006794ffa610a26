"""TIGER's training step with torch's dropout against ``fast_dropout`` (``model/layers/dropout.py``), side by side.

    python benchmarks/tiger_dropout_cost.py --dataset=amazon-beauty --batches=8 --threads=1 \
        --semantic_id_cache_dir=saved/benchmark_semantic_ids

Both models get the same weights and the same batches (the dataset's TIGER settings), and the steps alternate,
torch's dropout first, so that machine noise falls on both. A step is a forward pass, the loss, a backward pass
and an Adam update, as the trainer runs it; the first pair is a warm-up and is not timed. The losses differ by
the dropout draws only, so their means are reported, not their differences. Writes
``results/tiger_dropout_cost_<dataset>.json``.
"""

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None, help="default: the plugin's shipped copy or RecBole's")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--semantic_id_cache_dir", default=None, help="default: the config's")
    args = parser.parse_args()
    if args.batches < 1 or args.threads < 1:
        parser.error("--batches and --threads must be at least 1")

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_lamia import TIGER

    torch.set_num_threads(args.threads)
    config_dict = {"show_progress": False, "state": "WARNING", "use_gpu": False}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    if args.semantic_id_cache_dir:
        config_dict["semantic_id_cache_dir"] = os.path.abspath(args.semantic_id_cache_dir)
    config = Config(model="TIGER", dataset=args.dataset, config_dict=config_dict)
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    models = {}
    for name, fast in (("torch", False), ("fast", True)):
        config["fast_dropout"] = fast
        models[name] = TIGER(config, train_data.dataset)
    models["fast"].load_state_dict(models["torch"].state_dict())
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=config["learning_rate"]) for name, m in models.items()}
    seconds = {name: 0.0 for name in models}
    losses = {name: [] for name in models}
    timed = 0
    for index, batch in enumerate(train_data):
        if index > args.batches:
            break
        for name, model in models.items():
            model.train()
            torch.manual_seed(index)
            start = time.perf_counter()
            optimizers[name].zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizers[name].step()
            if index > 0:
                seconds[name] += time.perf_counter() - start
                losses[name].append(loss.item())
        timed += index > 0
        print(f"batch {index}: " + ", ".join(f"{name} {seconds[name]:.1f} s" for name in models), flush=True)
    per_step = {name: round(s / timed, 3) for name, s in seconds.items()}
    result = {
        "dataset": args.dataset, "threads": args.threads, "timed_batches": timed, "batches_per_epoch": len(train_data),
        "train_batch_size": config["train_batch_size"], "dropout_rate": config["dropout_rate"],
        "seconds_per_step": per_step, "speedup": round(per_step["torch"] / per_step["fast"], 2),
        "mean_loss": {name: round(sum(v) / len(v), 4) for name, v in losses.items()},
        "epoch_minutes_extrapolated": {name: round(s * len(train_data) / 60, 1) for name, s in per_step.items()},
    }
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    out = os.path.join(ROOT, "results", f"tiger_dropout_cost_{args.dataset}.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
