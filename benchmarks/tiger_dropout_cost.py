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

import itertools
import os
import statistics

from step_timing import parse_step_args, step_parser, timed_steps, train_step, training_data, write_result


def main():
    parser = step_parser(__doc__, default_batches=8)
    parser.add_argument("--semantic_id_cache_dir", default=None, help="default: the config's")
    parser.add_argument("--profile", action="store_true", help="also record the operators' shares of a step")
    args = parse_step_args(parser)

    import torch

    from recbole_lamia import TIGER

    cache_dir = os.path.abspath(args.semantic_id_cache_dir) if args.semantic_id_cache_dir else None
    config, train_data = training_data("TIGER", args, semantic_id_cache_dir=cache_dir)
    models = {}
    for name, fast in (("torch", False), ("fast", True)):
        config["fast_dropout"] = fast
        models[name] = TIGER(config, train_data.dataset)
    models["fast"].load_state_dict(models["torch"].state_dict())
    # A warm-up, the timed ones, and two for the profile.
    batches = list(itertools.islice(train_data, args.batches + 1 + (2 if args.profile else 0)))
    seconds, losses = timed_steps(models, batches[:args.batches + 1], config["learning_rate"], swap_order=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = [a / b for a, b in zip(seconds["torch"], seconds["fast"])]
    result = {
        "dataset": args.dataset, "threads": args.threads, "timed_batches": len(ratios),
        "batches_per_epoch": len(train_data), "train_batch_size": config["train_batch_size"],
        "dropout_rate": config["dropout_rate"], "seconds_per_step": seconds,
        "median_seconds_per_step": median, "speedup_of_medians": round(median["torch"] / median["fast"], 3),
        "per_batch_speedup": {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
                              "max": round(max(ratios), 3)},
        "mean_loss": {name: round(sum(v[1:]) / len(v[1:]), 4) for name, v in losses.items()},
        "epoch_minutes_extrapolated": {name: round(m * len(train_data) / 60, 1) for name, m in median.items()},
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        result["profile_shares"] = {}
        for name, model in models.items():
            optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for batch in batches[-2:]:
                    train_step(model, optimizer, batch)
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
            result["profile_shares"][name] = {e.key: round(e.self_cpu_time_total / total, 3) for e in top}
    write_result(f"tiger_dropout_cost_{args.dataset}", result)


if __name__ == "__main__":
    main()
