"""BERT4Rec's training step: RecBole's loss against the plugin's (masked positions only), side by side.

    python benchmarks/bert4rec_loss_cost.py --dataset=amazon-beauty --batches=6 --threads=1

Both models get the same weights and the same batches (the dataset's own BERT4Rec settings, e.g.
``properties/amazon-beauty/BERT4Rec.yaml``), and the steps alternate, RecBole's first, so that machine noise falls
on both. Each step is a forward pass, the loss, a backward pass and an Adam update, as the trainer runs it. The
first pair of steps is a warm-up and is not timed. Reports seconds per step, the ratio, the largest loss
difference between the two, and the share of mask slots that hold a masked item; writes
``results/bert4rec_loss_cost_<dataset>.json``.
"""

import itertools

from step_timing import parse_step_args, step_parser, timed_steps, training_data, write_result


def main():
    parser = step_parser(__doc__, default_batches=6)
    parser.add_argument("--train_batch_size", type=int, default=None,
                        help="default: the config's; RecBole's step at 2048 needs about 10 GB on amazon-beauty")
    args = parse_step_args(parser)

    from recbole_lamia import BERT4Rec
    from recbole_lamia.model.sequential_recommender.bert4rec import RecBoleBERT4Rec

    config, train_data = training_data("BERT4Rec", args, train_batch_size=args.train_batch_size)
    models = {"recbole": RecBoleBERT4Rec(config, train_data.dataset), "plugin": BERT4Rec(config, train_data.dataset)}
    models["plugin"].load_state_dict(models["recbole"].state_dict())
    batches = list(itertools.islice(train_data, args.batches + 1))  # a warm-up, then the timed ones
    seconds, losses = timed_steps(models, batches, config["learning_rate"])
    loss_gap = max(abs(a - b) for a, b in zip(losses["recbole"], losses["plugin"]))
    mask_slots = [batch[models["plugin"].MASK_INDEX] for batch in batches[1:]]
    real_slots = sum(int((slots > 0).sum()) for slots in mask_slots)
    all_slots = sum(slots.numel() for slots in mask_slots)
    timed = len(batches) - 1
    per_step = {name: round(sum(values) / timed, 3) for name, values in seconds.items()}
    result = {
        "dataset": args.dataset, "threads": args.threads, "timed_batches": timed, "batches_per_epoch": len(train_data),
        "train_batch_size": config["train_batch_size"], "mask_ratio": config["mask_ratio"],
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"], "seconds_per_step": per_step,
        "speedup": round(per_step["recbole"] / per_step["plugin"], 2), "max_loss_difference": loss_gap,
        "masked_share_of_slots": round(real_slots / all_slots, 4),
        "note": "weights diverge slightly after the first update (float rounding); losses are compared per batch",
    }
    write_result(f"bert4rec_loss_cost_{args.dataset}", result)


if __name__ == "__main__":
    main()
