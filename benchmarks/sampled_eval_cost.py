"""Cost of RecBole's sampled evaluation modes next to full ranking, for one trained LAMIA, in one process.

    python benchmarks/sampled_eval_cost.py --threads=1

Trains LAMIA (small settings, ``--set`` to change them), then evaluates the test split with RecBole's
``Trainer.evaluate`` in each mode: ``full`` (``full_sort_predict``) and the sampled modes (``pop100``, ``uni100``:
1 positive + 100 negatives per user, rows scored by ``predict``, each user's history repeated once per candidate).
Each sampled mode runs three times on the same negatives:

* before: as up to issue 18: the per-row ``predict`` (the encoder runs once per row, ~101 times per user) and
  RecBole's own loader, which builds each batch user by user (timed once: it is two orders slower);
* recbole_loader: ``LAMIA.predict`` (the encoder runs once per distinct history) with RecBole's own loader;
* after: ``LAMIA.predict`` and the plugin's one-pass loader (``compat.patch_recbole_sampled_eval_collate``).

Each time is the fastest of ``--repeats`` evaluations; ``model_seconds`` is the part spent inside the model's
scoring call, the rest is RecBole's batching and negative sampling. Writes results/sampled_eval_cost.json.
"""

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The palette with k-means, also on ml-100k, whose LAMIA default (sentence + PQ) came after these timings.
DEFAULTS = {"item_embedding": "palette", "quantizer": "kmeans", "palette_size": 4, "codebook_size": 64,
            "palette_epochs": 1, "epochs": 1,
            "semantic_id_cache_dir": os.path.join(ROOT, "saved", "sampled_eval_semantic_ids")}


def per_row_predict(model, interaction):
    """LAMIA's ``predict`` before issue 18: the history of every row encoded on its own."""
    log_probs = model.level_log_probs(model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]))
    target = model.item_codes[interaction[model.ITEM_ID]]
    return sum(lp.gather(1, target[:, level:level + 1]).squeeze(1) for level, lp in enumerate(log_probs))


def timed_evaluation(trainer, test, scorer, name, repeats, seed, recbole_loader=False):
    """``(seconds, model_seconds, result)`` of the fastest of ``repeats`` test evaluations, with
    ``trainer.model.<name>`` replaced by ``scorer`` (timed) and the negatives drawn from ``seed`` each time;
    ``recbole_loader``: build the sampled batches with RecBole's own ``collate_fn`` instead of the plugin's."""
    import functools

    from recbole.data.dataloader import NegSampleEvalDataLoader
    from recbole.utils import init_seed

    plugin_collate = test.collate_fn  # bound when the loader was built
    if recbole_loader:
        test.collate_fn = functools.partial(NegSampleEvalDataLoader.collate_fn.recbole_collate_fn, test)
    try:
        return _fastest_evaluation(trainer, test, scorer, name, repeats, seed, init_seed)
    finally:
        test.collate_fn = plugin_collate


def _fastest_evaluation(trainer, test, scorer, name, repeats, seed, init_seed):
    model, best = trainer.model, None
    for _ in range(repeats):
        clock = [0.0]

        def timed(interaction, clock=clock):
            start = time.perf_counter()
            scores = scorer(interaction)
            clock[0] += time.perf_counter() - start
            return scores

        setattr(model, name, timed)
        try:
            init_seed(seed, True)
            start = time.perf_counter()
            result = trainer.evaluate(test, load_best_model=False, show_progress=False)
            seconds = time.perf_counter() - start
        finally:
            delattr(model, name)
        if best is None or seconds < best[0]:
            best = (seconds, clock[0], {k: round(float(v), 4) for k, v in result.items()})
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--modes", default="pop100,uni100", help="sampled test modes, timed against full")
    parser.add_argument("--repeats", type=int, default=2, help="evaluations per timing; the fastest is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--set", action="append", default=[], help="key=value (YAML value) override")
    args = parser.parse_args()
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    from recbole_lamia.utils.files import write_json_atomic
    from recbole_lamia.utils.overrides import parse_overrides

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {**DEFAULTS, "show_progress": False, "state": "WARNING", "use_gpu": False,
                 **parse_overrides(args.set)}
    trainers, tests, net = {}, {}, None
    for mode in ["full"] + args.modes.split(","):
        eval_args = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                     "mode": {"valid": "full", "test": mode}}
        config = Config(model="LAMIA", dataset=args.dataset, config_dict={**overrides, "eval_args": eval_args})
        init_seed(config["seed"], config["reproducibility"])
        train, _, tests[mode] = data_preparation(config, create_dataset(config))
        if net is None:  # one model, trained once, scored in every mode
            net = get_model("LAMIA")(config, train._dataset).to(config["device"])
            start = time.perf_counter()
            trainer = Trainer(config, net)
            for epoch in range(config["epochs"]):
                trainer._train_epoch(train, epoch, show_progress=False)
            train_seconds = time.perf_counter() - start
        trainers[mode] = Trainer(config, net)
        seed = config["seed"]

    rows = []
    full_seconds, full_model, full_result = timed_evaluation(trainers["full"], tests["full"], net.full_sort_predict,
                                                             "full_sort_predict", args.repeats, seed)
    rows.append({"mode": "full", "seconds": round(full_seconds, 3), "model_seconds": round(full_model, 3),
                 "test": full_result})
    print(json.dumps(rows[-1]), flush=True)
    for mode in args.modes.split(","):
        test = tests[mode]
        row = {"mode": mode, "users": len(test.uid_list), "rows": int(test.uid2items_num.sum()) * test.times}
        variants = (("before", lambda interaction: per_row_predict(net, interaction), True, 1),
                    ("recbole_loader", net.predict, True, args.repeats),
                    ("after", net.predict, False, args.repeats))
        for when, scorer, recbole_loader, repeats in variants:
            seconds, model_seconds, result = timed_evaluation(trainers[mode], test, scorer, "predict",
                                                              repeats, seed, recbole_loader)
            row[when] = {"seconds": round(seconds, 3), "model_seconds": round(model_seconds, 3),
                         "ratio_to_full": round(seconds / full_seconds, 2), "test": result}
        row["same_metrics"] = row["before"]["test"] == row["recbole_loader"]["test"] == row["after"]["test"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = os.path.join(ROOT, "results", "sampled_eval_cost.json")
    write_json_atomic(out, {"dataset": args.dataset, "args": vars(args), "overrides": overrides,
                            "torch_threads": torch.get_num_threads(), "train_seconds": round(train_seconds, 1),
                            "rows": rows})
    print(f"written {out}")


if __name__ == "__main__":
    main()
