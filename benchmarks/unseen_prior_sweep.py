"""Choose LAMIA's ``unseen_item_count`` on the validation split, after training, for a cold-start leaderboard row.

    python benchmarks/unseen_prior_sweep.py \
        --run_dir=saved/cold_probe/prior1_unseen5_content10/amazon-beauty/LAMIA/main --counts=1,2,5,10,20,50

With ``popularity_prior_weight`` > 0, an item that is never a training target is left out of the training
softmax and scored with the prior of ``unseen_item_count`` targets, so the weights do not depend on that setting.
(Validation scores with it, so for a converged row it can also move the best epoch: a rescored count is the
trained checkpoint with another count, not a row trained with it.)
This script reloads the row's best checkpoint (``recbole_lamia.leaderboard.ranks.load_phase``), and for each
count ranks every validation and test target over all items as RecBole's full-sort evaluation does. It prints
and writes ``results/unseen_prior_sweep_<name>.json``: Recall@10 and NDCG@10 on all cases and on the cold
cases (target never in training), per split, and the count with the best validation NDCG@10, the metric every
row is early-stopped on. Read the test columns only for the chosen count.
"""

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def metrics_at_10(ranks):
    """Recall@10 and NDCG@10 of 1-based leave-one-out ``ranks`` (one target per case)."""
    from recbole_lamia.leaderboard.significance import per_user_metrics

    if len(ranks) == 0:
        return {"cases": 0}
    metrics = per_user_metrics(ranks, [10])
    return {"cases": int(len(ranks)), **{name: round(float(values.mean()), 4) for name, values in metrics.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="a leaderboard phase folder (spec.json, best.pth)")
    parser.add_argument("--counts", default="1,2,5,10,20,50", help="comma-separated unseen_item_count values")
    parser.add_argument("--data_path", default=None, help="override the data_path stored in spec.json")
    parser.add_argument("--name", default=None, help="output file stem (default: the row's checkpoint_dir name)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "results"))
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from recbole_lamia.leaderboard.ranks import load_phase, target_ranks
    from recbole_lamia.utils.files import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    counts = [float(c) for c in args.counts.split(",") if c.strip()]
    phase = load_phase(args.run_dir, args.data_path, require_cold=True)
    model, dataset = phase.model, phase.dataset
    if not hasattr(model, "set_unseen_item_count") or not float(phase.config["popularity_prior_weight"] or 0):
        raise SystemExit(f"{args.run_dir} is not a LAMIA row with popularity_prior_weight > 0.")
    is_cold = np.zeros(dataset.item_num, dtype=bool)
    is_cold[np.asarray(phase.cold_items, dtype=np.int64)] = True
    rows = []
    for count in counts:
        model.set_unseen_item_count(count)
        row, start = {"unseen_item_count": count}, time.time()
        for split, loader in (("valid", phase.valid_data), ("test", phase.test_data)):
            _, targets, ranks = target_ranks(model, loader, dataset.item_num, dataset.uid_field,
                                             phase.config["device"], desc=f"{split}, unseen_item_count {count:g}")
            row[split] = metrics_at_10(ranks)
            row[f"{split}_cold"] = metrics_at_10(ranks[is_cold[targets]])
        row["seconds"] = round(time.time() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["valid"]["ndcg@10"])
    result = {"run_dir": args.run_dir, "trained_with": phase.config["unseen_item_count"],
              "popularity_prior_weight": phase.config["popularity_prior_weight"],
              "chosen_on_valid_ndcg@10": best["unseen_item_count"], "rows": rows}
    name = args.name or os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(args.run_dir)))))
    out = os.path.join(args.output_dir, f"unseen_prior_sweep_{name}.json")
    write_json_atomic(out, result)
    print(f"chosen on valid NDCG@10: unseen_item_count {best['unseen_item_count']:g}; written {out}")
    return result


if __name__ == "__main__":
    main()
