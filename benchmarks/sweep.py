"""Sweep one config key of a model on one dataset; choose by the VALID metric, report test alongside.

    python benchmarks/sweep.py --model=LAMIA --dataset=ml-100k --key=palette_size --values=1,2,4,8 \
        --set item_embedding=palette --set quantizer=kmeans   # ml-100k's LAMIA default has no palette
    python benchmarks/sweep.py --model=LAMIA --dataset=amazon-beauty --data_path=../shared/datasets \
        --key=palette_size --values=2,4,8 --set epochs=20

Each value runs in its own process, as RecBole's quick start does (``run_recbole`` with ``saved=False``: early
stopping on the valid metric, test scored by the model after the last epoch), keeping each epoch's valid score.
Results, with each run's per-epoch valid curve, are merged into
results/sweep_<dataset>_<model>_<key><suffix>.json after every value (a value run again replaces its row).
Stopping the sweep (Ctrl-C or SIGTERM) stops the running child too.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(model, dataset, config_dict, threads=None):
    """Train and test one configuration the way RecBole's ``run_recbole(saved=False)`` does, keeping the
    valid score after each epoch (the trainer's ``callback_fn``). As there, test is scored by the model
    after the last epoch (nothing is saved to reload the best one from)."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    import recbole_lamia  # noqa: F401

    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    config = Config(model=model, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    valid_curve = []
    _, best_valid = trainer.fit(train_data, valid_data, saved=False, show_progress=config["show_progress"],
                                callback_fn=lambda epoch, score: valid_curve.append(float(score)))
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
    return {"seconds": round(time.time() - start, 1), "best_valid": dict(best_valid), "test": dict(test),
            "test_model": "last epoch", "valid_curve": valid_curve}


def _stop(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")  # subprocess.run then kills the running child


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="LAMIA")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--key", required=True)
    parser.add_argument("--values", required=True, help="comma-separated YAML values")
    parser.add_argument("--set", action="append", default=[], help="key=value override for every run")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (default: torch's)")
    parser.add_argument("--output_suffix", default="", help="appended to the results file name")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from recbole_lamia.utils.files import write_json_atomic
    from recbole_lamia.utils.overrides import parse_overrides, parse_value

    if args.child:
        sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv
        result = run_one(args.model, args.dataset, json.loads(args.child), args.threads)
        print("RESULT " + json.dumps(result), flush=True)
        return
    base = parse_overrides(args.set)
    base.setdefault("show_progress", False)
    if args.data_path:
        base["data_path"] = os.path.abspath(args.data_path)
    out = os.path.join(ROOT, "results", f"sweep_{args.dataset}_{args.model}_{args.key}{args.output_suffix}.json")
    rows = []
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            rows = json.load(f).get("rows", [])
    signal.signal(signal.SIGTERM, _stop)
    for raw in args.values.split(","):
        value = parse_value(raw)
        config = dict(base, **{args.key: value})
        print(f"[{time.strftime('%H:%M:%S')}] {args.model} {args.key}={value} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, f"--key={args.key}", f"--values={raw}",
                               f"--model={args.model}", f"--dataset={args.dataset}", f"--child={json.dumps(config)}"]
                              + ([f"--threads={args.threads}"] if args.threads else []),
                              capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        row = {args.key: value, "overrides": base,
               **(json.loads(lines[-1][7:]) if lines else {"error": proc.stderr[-1500:]})}
        rows = [r for r in rows if r.get(args.key) != value] + [row]
        print(json.dumps(row), flush=True)
        write_json_atomic(out, {"model": args.model, "dataset": args.dataset, "key": args.key, "overrides": base,
                                "threads": args.threads, "selection": "best valid ndcg@10", "rows": rows})
    done = [r for r in rows if "best_valid" in r]
    if done:
        best = max(done, key=lambda r: r["best_valid"].get("ndcg@10", -1))
        print(f"best by valid ndcg@10: {args.key}={best[args.key]}")


if __name__ == "__main__":
    main()
