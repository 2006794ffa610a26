"""Are two leaderboard rows' test scores really different? A paired comparison, user by user.

    python benchmarks/paired_test.py \
        --run_a=saved/leaderboard/amazon-beauty/LAMIA/main --run_b=saved/leaderboard/amazon-beauty/SASRec/main \
        --data_path=../shared/datasets --threads=2

Each ``--run_*`` is a phase folder of ``python -m recbole_lamia.leaderboard`` (``spec.json`` and ``best.pth``). Both
rows are reloaded as the leaderboard built them and every test user's target is ranked over all items. Both rows
score the same users (leave-one-out gives one test case per user), so the comparison is paired: per metric
(Recall@k, NDCG@k for each k in ``--topk``) it reports each row's mean, the difference A - B, a 95 % paired
bootstrap interval of the difference (``--resamples`` user resamples, seeded), and a two-sided p-value:
McNemar's exact test for Recall (only the users one row hits and the other misses count) and a sign-flip
permutation test for NDCG. Written to ``results/paired_<name>.json``.

``--split=valid`` ranks the validation targets instead, for tuning decisions that must not look at the test
split: no test figure is read or written, and the file name always contains ``valid``.
"""

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ranked_run(run_dir, data_path, split="test"):
    """``(spec, {user token: rank}, result.json, seconds)`` of one leaderboard phase folder, on ``split``."""
    import numpy as np

    from recbole_lamia.leaderboard.ranks import load_phase, target_ranks

    print(f"[{time.strftime('%H:%M:%S')}] {run_dir}: rebuilding the dataset and loading best.pth", flush=True)
    phase = load_phase(run_dir, data_path)
    dataset = phase.dataset
    start = time.time()
    data = phase.valid_data if split == "valid" else phase.test_data
    users, _, ranks = target_ranks(phase.model, data, dataset.item_num, dataset.uid_field, phase.config["device"],
                                   desc=f"ranking {phase.spec.get('row', run_dir)} ({split})")
    tokens = dataset.id2token(dataset.uid_field, users)
    if len(set(tokens.tolist())) != len(tokens):
        raise SystemExit(f"{run_dir}: more than one {split} case per user; this comparison assumes leave-one-out.")
    return phase.spec, dict(zip(tokens.tolist(), np.asarray(ranks).tolist())), phase.result, time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_a", required=True, help="a leaderboard phase folder (spec.json, best.pth)")
    parser.add_argument("--run_b", required=True, help="the phase folder it is compared with")
    parser.add_argument("--data_path", default=None, help="override the data_path stored in spec.json")
    parser.add_argument("--topk", default="5,10", help="comma-separated cut-offs")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap and permutation draws")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="output file stem (default: <row a>_vs_<row b>)")
    parser.add_argument("--split", choices=("test", "valid"), default="test",
                        help="rank the test targets (default), or the validation targets, for tuning decisions "
                             "that must not look at test")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import numpy as np
    import torch

    from recbole_lamia.leaderboard.significance import paired_comparison, per_user_metrics
    from recbole_lamia.utils.files import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    topk = [int(k) for k in args.topk.split(",") if k.strip()]
    if not topk or min(topk) < 1:
        raise SystemExit(f"--topk needs positive integers, got {args.topk!r}")
    runs = [ranked_run(run_dir, args.data_path, args.split) for run_dir in (args.run_a, args.run_b)]
    (spec_a, ranks_a, recorded_a, secs_a), (spec_b, ranks_b, recorded_b, secs_b) = runs
    if set(ranks_a) != set(ranks_b):
        raise SystemExit(f"the two rows have different {args.split} users ({len(ranks_a)} and {len(ranks_b)}, "
                         f"{len(set(ranks_a) & set(ranks_b))} shared): were they run on one split?")
    users = sorted(ranks_a)
    metrics_a = per_user_metrics([ranks_a[u] for u in users], topk)
    metrics_b = per_user_metrics([ranks_b[u] for u in users], topk)
    print(f"[{time.strftime('%H:%M:%S')}] {len(users):,} users ranked; {args.resamples:,} bootstrap and permutation "
          f"draws per metric", flush=True)
    comparison = {metric: paired_comparison(metrics_a[metric], metrics_b[metric], metric, args.resamples, args.seed)
                  for metric in metrics_a}
    name_a, name_b = spec_a.get("row", spec_a["model"]), spec_b.get("row", spec_b["model"])
    if name_a == name_b and not args.name:
        raise SystemExit(f"both runs are rows named {name_a}: give --name, or results/paired_{name_a}_vs_{name_a}.json "
                         "would be overwritten by the next such comparison")
    def recorded(result_json, metrics):  # the table's own figures of this split, to check the reload against
        if args.split == "valid":  # only the best valid NDCG@10 is recorded; no test figure is shown
            return {"best_valid_ndcg@10": result_json.get("best_valid_ndcg@10")}
        return {m: result_json.get(f"test_{m}") for m in metrics}

    result = {"split": args.split,
              "a": {"row": name_a, "run_dir": args.run_a, "ranking_seconds": round(secs_a, 1),
                    f"leaderboard_{args.split}": recorded(recorded_a, metrics_a)},
              "b": {"row": name_b, "run_dir": args.run_b, "ranking_seconds": round(secs_b, 1),
                    f"leaderboard_{args.split}": recorded(recorded_b, metrics_b)},
              f"{args.split}_users": len(users), "resamples": args.resamples, "seed": args.seed, "metrics": comparison,
              "median_rank": {"a": float(np.median(list(ranks_a.values()))),
                              "b": float(np.median(list(ranks_b.values())))}}
    print(json.dumps(result, indent=1))
    for metric, row in comparison.items():
        print(f"{metric:10s} {name_a} {row['a']:.4f}  {name_b} {row['b']:.4f}  diff {row['a_minus_b']:+.4f} "
              f"[{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}]  p={row['p_value']:.3g} ({row['test']})")
    stem = args.name or f"{name_a}_vs_{name_b}"
    if args.split == "valid" and "valid" not in stem:  # never overwrite a test comparison of the same name
        stem += "_valid"
    out = os.path.join(ROOT, "results", f"paired_{stem}.json")
    write_json_atomic(out, result)
    print(f"written {out}")


if __name__ == "__main__":
    main()
