"""BERT4Rec's training step: RecBole's loss against the plugin's (masked positions only), side by side.

    python benchmarks/bert4rec_loss_cost.py --dataset=amazon-beauty --batches=6 --threads=1

Both models get the same weights and the same batches (the dataset's own BERT4Rec settings, e.g.
``properties/amazon-beauty/BERT4Rec.yaml``), and the steps alternate, RecBole's first, so that machine noise falls
on both. Each step is a forward pass, the loss, a backward pass and an Adam update, as the trainer runs it. The
first pair of steps is a warm-up and is not timed. Reports seconds per step, the ratio, the largest loss
difference between the two, and the share of mask slots that hold a masked item; writes
``results/bert4rec_loss_cost_<dataset>.json``.
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
    parser.add_argument("--batches", type=int, default=6, help="timed batches per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train_batch_size", type=int, default=None,
                        help="default: the config's; RecBole's step at 2048 needs about 10 GB on amazon-beauty")
    args = parser.parse_args()
    if args.batches < 1 or args.threads < 1:
        parser.error("--batches and --threads must be at least 1")

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_lamia import BERT4Rec
    from recbole_lamia.model.sequential_recommender.bert4rec import RecBoleBERT4Rec

    torch.set_num_threads(args.threads)
    config_dict = {"show_progress": False, "state": "WARNING", "use_gpu": False}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    if args.train_batch_size:
        config_dict["train_batch_size"] = args.train_batch_size
    config = Config(model="BERT4Rec", dataset=args.dataset, config_dict=config_dict)
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    models = {"recbole": RecBoleBERT4Rec(config, train_data.dataset), "plugin": BERT4Rec(config, train_data.dataset)}
    models["plugin"].load_state_dict(models["recbole"].state_dict())
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=config["learning_rate"]) for name, m in models.items()}
    seconds = {name: 0.0 for name in models}
    loss_gap, real_slots, all_slots, timed = 0.0, 0, 0, 0
    for index, batch in enumerate(train_data):
        if index > args.batches:
            break
        losses = {}
        for name, model in models.items():
            model.train()
            torch.manual_seed(index)  # the same dropout draws for both
            start = time.perf_counter()
            optimizers[name].zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizers[name].step()
            if index > 0:
                seconds[name] += time.perf_counter() - start
            losses[name] = loss.item()
        loss_gap = max(loss_gap, abs(losses["recbole"] - losses["plugin"]))
        if index > 0:
            timed += 1
            mask_index = batch[models["plugin"].MASK_INDEX]
            real_slots += int((mask_index > 0).sum())
            all_slots += mask_index.numel()
        print(f"batch {index}: loss recbole {losses['recbole']:.5f}, plugin {losses['plugin']:.5f}", flush=True)
    per_step = {name: round(s / timed, 3) for name, s in seconds.items()}
    result = {
        "dataset": args.dataset, "threads": args.threads, "timed_batches": timed, "batches_per_epoch": len(train_data),
        "train_batch_size": config["train_batch_size"], "mask_ratio": config["mask_ratio"],
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"], "seconds_per_step": per_step,
        "speedup": round(per_step["recbole"] / per_step["plugin"], 2), "max_loss_difference": loss_gap,
        "masked_share_of_slots": round(real_slots / all_slots, 4),
        "note": "weights diverge slightly after the first update (float rounding); losses are compared per batch",
    }
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    out = os.path.join(ROOT, "results", f"bert4rec_loss_cost_{args.dataset}.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
