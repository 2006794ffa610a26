"""TIGER's training step with torch's dropout against ``fast_dropout`` (``model/layers/dropout.py``), side by side.

    python benchmarks/tiger_dropout_cost.py --dataset=amazon-beauty --batches=8 --threads=1 \
        --semantic_id_cache_dir=saved/benchmark_semantic_ids

Both models get the same weights and the same batches (the dataset's TIGER settings), and the steps alternate,
which one goes first swapping every batch, so that machine noise falls on both. A step is a forward pass, the
loss, a backward pass and an Adam update, as the trainer runs it; the first pair is a warm-up and is not timed.
Reports each step's seconds, their median and the median of the per-batch ratios, and the mean losses (they
differ by the dropout draws only). ``--profile`` also runs two more steps of each under ``torch.profiler`` and
records the share of the step taken by the largest operators (e.g. ``aten::bernoulli_``, torch's dropout draw).
Writes ``results/tiger_dropout_cost_<dataset>.json``.
"""

import argparse
import json
import os
import statistics
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None, help="default: the plugin's shipped copy or RecBole's")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--semantic_id_cache_dir", default=None, help="default: the config's")
    parser.add_argument("--profile", action="store_true", help="also record the operators' shares of a step")
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

    def step(name, batch):
        models[name].train()
        optimizers[name].zero_grad()
        loss = models[name].calculate_loss(batch)
        loss.backward()
        optimizers[name].step()
        return loss.item()

    seconds = {name: [] for name in models}
    losses = {name: [] for name in models}
    batches = []  # a warm-up, the timed ones, and two for the profile
    for batch in train_data:
        if len(batches) == args.batches + 1 + (2 if args.profile else 0):
            break
        batches.append(batch)
    for index, batch in enumerate(batches[:args.batches + 1]):
        order = list(models) if index % 2 == 0 else list(models)[::-1]
        for name in order:
            torch.manual_seed(index)
            start = time.perf_counter()
            loss = step(name, batch)
            if index > 0:
                seconds[name].append(round(time.perf_counter() - start, 3))
                losses[name].append(loss)
        print(f"batch {index}: " + ", ".join(f"{name} {sum(seconds[name]):.1f} s" for name in models), flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = [a / b for a, b in zip(seconds["torch"], seconds["fast"])]
    result = {
        "dataset": args.dataset, "threads": args.threads, "timed_batches": len(ratios),
        "batches_per_epoch": len(train_data), "train_batch_size": config["train_batch_size"],
        "dropout_rate": config["dropout_rate"], "seconds_per_step": seconds,
        "median_seconds_per_step": median, "speedup_of_medians": round(median["torch"] / median["fast"], 3),
        "per_batch_speedup": {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
                              "max": round(max(ratios), 3)},
        "mean_loss": {name: round(sum(v) / len(v), 4) for name, v in losses.items()},
        "epoch_minutes_extrapolated": {name: round(m * len(train_data) / 60, 1) for name, m in median.items()},
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        result["profile_shares"] = {}
        for name in models:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for batch in batches[-2:]:
                    step(name, batch)
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
            result["profile_shares"][name] = {e.key: round(e.self_cpu_time_total / total, 3) for e in top}
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    out = os.path.join(ROOT, "results", f"tiger_dropout_cost_{args.dataset}.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
