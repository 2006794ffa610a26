"""Where a trained leaderboard row ranks the test targets, cold-start items against the others.

    python benchmarks/cold_ranks.py --run_dir=saved/cold_probe/item_loss/amazon-beauty/LAMIA/main \
        --data_path=../shared/datasets

``--run_dir`` is one phase folder of ``python -m recbole_lamia.leaderboard`` (it holds ``spec.json`` and
``best.pth``), trained with ``--cold_start_ratio`` > 0. The dataset, the cold items and the training split are
rebuilt exactly as the leaderboard's child built them, the best checkpoint is loaded, and every test user is
scored over all items as RecBole's full-sort evaluation does (the user's training items masked). For each test
case the rank of its target is kept (1 = top). Printed and written to ``results/cold_ranks_<name>.json``:
rank quantiles and hit shares at 10, 100 and 1000, for the cases whose target is cold and for the others (also by
the target's interaction count), so that a near-zero cold Recall@10 can be told apart from cold items ranked at
random (median about n_items / 2), and cold items from warm items that are just as rare.
"""

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rank_summary(ranks, n_items):
    """Quantiles and hit shares of 1-based ``ranks`` among ``n_items`` candidates."""
    import numpy as np

    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return {"cases": 0}
    return {"cases": int(len(ranks)), "median_rank": float(np.median(ranks)),
            "mean_percentile": round(float(np.mean(ranks / n_items)) * 100, 2),
            "quartiles": [float(q) for q in np.percentile(ranks, [25, 75])],
            **{f"hit@{k}": round(float(np.mean(ranks <= k)), 4) for k in (10, 100, 1000)}}


def shared_tokens(item_codes, cold_items):
    """How much of the cold items' semantic IDs warm items also use (semantic-ID models only).

    ``token_share``: share of (cold item, aspect) tokens that some warm item has at that aspect.
    ``max_aspects_shared_with_one_warm_item``: per cold item, the most aspects it has in common with one warm item.
    """
    import numpy as np

    codes = np.asarray(item_codes)[1:]  # row 0 is padding
    cold = np.asarray(cold_items, dtype=np.int64) - 1
    warm = np.setdiff1d(np.arange(len(codes)), cold)
    token_share = np.mean([[np.isin(codes[c, level], codes[warm, level]) for level in range(codes.shape[1])]
                           for c in cold])
    most = np.array([(codes[warm] == codes[c]).sum(1).max() for c in cold])
    return {"semantic_id_length": int(codes.shape[1]), "token_share": round(float(token_share), 4),
            "max_aspects_shared_with_one_warm_item": {"median": float(np.median(most)),
                                                      "p10_p90": [float(q) for q in np.percentile(most, [10, 90])]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="a leaderboard phase folder (spec.json, best.pth)")
    parser.add_argument("--data_path", default=None, help="override the data_path stored in spec.json")
    parser.add_argument("--name", default=None, help="output file stem (default: the row's name)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import numpy as np
    import torch

    from recbole_lamia.leaderboard.ranks import load_phase, target_ranks
    from recbole_lamia.utils.files import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    phase = load_phase(args.run_dir, args.data_path, require_cold=True)
    spec, config, dataset, cold_items = phase.spec, phase.config, phase.dataset, phase.cold_items

    is_cold = np.zeros(dataset.item_num, dtype=bool)
    is_cold[np.asarray(cold_items, dtype=np.int64)] = True
    # Interactions per item in the whole filtered dataset (training, valid and test), to set the cold items
    # beside warm items that are about as rare: a long-tail item is also scored from few training events.
    item_counts = np.bincount(dataset.inter_feat[dataset.iid_field].numpy(), minlength=dataset.item_num)
    buckets = [(5, 6), (7, 10), (11, 20), (21, None)]
    cold_ranks, warm_ranks, bucket_ranks = [], [], {bucket: [] for bucket in buckets}
    start = time.time()
    _, targets, ranks = target_ranks(phase.model, phase.test_data, dataset.item_num, dataset.uid_field,
                                     config["device"], desc="ranking test targets")
    for item, rank in zip(targets.tolist(), ranks.tolist()):
        if is_cold[item]:
            cold_ranks.append(rank)
            continue
        warm_ranks.append(rank)
        for low, high in buckets:
            if item_counts[item] >= low and (high is None or item_counts[item] <= high):
                bucket_ranks[(low, high)].append(rank)
    n_items = dataset.item_num - 1
    result = {"run_dir": args.run_dir, "row": spec.get("row"), "model": spec["model"],
              "epoch": phase.checkpoint.get("cur_epoch"), "n_items": n_items, "cold_items": int(len(cold_items)),
              "random_median_rank": (n_items + 1) / 2, "seconds": round(time.time() - start, 1),
              "cold": rank_summary(cold_ranks, n_items), "warm": rank_summary(warm_ranks, n_items),
              "warm_by_interactions": {f"{low}-{high or 'inf'}": rank_summary(bucket_ranks[(low, high)], n_items)
                                       for low, high in buckets}}
    if hasattr(dataset, "item_semantic_ids"):
        result["cold_ids"] = shared_tokens(dataset.item_semantic_ids.numpy(), cold_items)
    print(json.dumps(result, indent=1))
    out = os.path.join(ROOT, "results", f"cold_ranks_{args.name or spec.get('row', spec['model'])}.json")
    write_json_atomic(out, result)
    print(f"written {out}")


if __name__ == "__main__":
    main()
