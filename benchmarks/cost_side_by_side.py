"""Side-by-side cost of LAMIA and RecBole's SASRec on one dataset (issue targets).

Each stage runs in its own process, so peak memory is per stage:
  tokenizer  build the LAMIA dataset with an empty semantic-ID cache (tuning + quantizing)
  <model>    one training epoch and one full-sort evaluation of all test users
             (with --max_batches=N only the first N batches of each are timed and the full pass is
             extrapolated; the row says so: for models too slow to run a whole epoch here, e.g. TIGER)

    python benchmarks/cost_side_by_side.py --dataset=amazon-beauty --data_path=../shared/datasets

Writes results/cost_<dataset>.json and prints a table. The machine is noisy: compare rows of one run.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peak_rss_gb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3)


def _timed_batches(loader, max_batches, step):
    """Run ``step`` on up to ``max_batches`` batches; return (seconds, batches run, batches in the loader)."""
    total = len(loader)
    start, done = time.time(), 0
    for batch in loader:
        step(batch)
        done += 1
        if max_batches and done >= max_batches:
            break
    return time.time() - start, done, total


def run_stage(stage, dataset, data_path, overrides, max_batches=0):
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    import recbole_lamia  # noqa: F401

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    config_dict = {"data_path": data_path, "show_progress": False, "state": "WARNING", "use_gpu": False}
    config_dict.update(overrides)
    model = "LAMIA" if stage == "tokenizer" else stage
    # Every stage shares one cache; only the tokenizer stage starts it empty, so it is timed from scratch.
    cache_dir = os.path.join(ROOT, "saved", "benchmark_semantic_ids")
    if stage == "tokenizer":
        shutil.rmtree(cache_dir, ignore_errors=True)
    config_dict["semantic_id_cache_dir"] = cache_dir
    config = Config(model=model, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    start = time.time()
    data = create_dataset(config)
    row = {"stage": stage, "dataset_seconds": round(time.time() - start, 1)}
    if stage == "tokenizer":
        report = data.semantic_id_report
        row.update({"tokenizer_seconds": row["dataset_seconds"], "embedding": report["embedding"]["stats"],
                    "tuning_history": report["embedding"]["history"],
                    "quantizer_seconds": report["codes"]["seconds"],
                    "diagnostics": report["codes"]["diagnostics"], "collisions": report["codes"]["collisions"],
                    "peak_rss_gb": _peak_rss_gb()})
        return row
    train, valid, test = data_preparation(config, data)
    net = get_model(model)(config, train._dataset).to(config["device"])
    trainer = Trainer(config, net)
    row["train_samples"] = len(train.dataset)
    row["test_users"] = len(test.dataset)
    if not max_batches:
        start = time.time()
        loss = trainer._train_epoch(train, 0, show_progress=False)
        row["epoch_seconds"] = round(time.time() - start, 1)
        row["train_loss"] = float(loss if not isinstance(loss, tuple) else sum(loss))
        start = time.time()
        result = trainer.evaluate(test, load_best_model=False, show_progress=False)
        row["full_sort_eval_seconds"] = round(time.time() - start, 1)
        row["test_after_one_epoch"] = {k: float(v) for k, v in result.items()}
    else:
        def train_step(batch):
            net.train()
            trainer.optimizer.zero_grad()
            net.calculate_loss(batch.to(config["device"])).backward()
            trainer.optimizer.step()

        def eval_step(batch):
            net.eval()
            with torch.no_grad():
                net.full_sort_predict(batch[0].to(config["device"]))

        seconds, done, total = _timed_batches(train, max_batches, train_step)
        row["epoch_seconds"] = round(seconds / done * total, 1)
        row["train_batches_timed"] = f"{done}/{total}"
        seconds, done, total = _timed_batches(test, max_batches, eval_step)
        row["full_sort_eval_seconds"] = round(seconds / done * total, 1)
        row["eval_batches_timed"] = f"{done}/{total}"
        row["extrapolated"] = True
    row["parameters"] = sum(p.numel() for p in net.parameters())
    row["peak_rss_gb"] = _peak_rss_gb()
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=os.path.join(ROOT, "..", "shared", "datasets"))
    parser.add_argument("--stages", default="tokenizer,SASRec,LAMIA")
    parser.add_argument("--output_suffix", default="", help="results/cost_<dataset>_<suffix>.json")
    parser.add_argument("--max_batches", type=int, default=0, help="time only N batches and extrapolate")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help="key=value (YAML value) override for all stages")
    args = parser.parse_args()
    from recbole_lamia.utils.files import write_json_atomic
    from recbole_lamia.utils.overrides import parse_overrides

    overrides = parse_overrides(args.set)
    if args.stage:
        print("RESULT " + json.dumps(run_stage(args.stage, args.dataset, os.path.abspath(args.data_path), overrides,
                                                args.max_batches)))
        return
    rows = []
    suffix = f"_{args.output_suffix}" if args.output_suffix else ""
    out = os.path.join(ROOT, "results", f"cost_{args.dataset}{suffix}.json")
    for stage in args.stages.split(","):
        cmd = [sys.executable, __file__, f"--stage={stage}", f"--dataset={args.dataset}",
               f"--data_path={args.data_path}", f"--max_batches={args.max_batches}"] + [f"--set={s}" for s in args.set]
        print(f"[{time.strftime('%H:%M:%S')}] running {stage} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        row = json.loads(lines[-1][7:]) if lines else {"stage": stage, "error": proc.stderr[-2000:]}
        rows.append(row)
        print(json.dumps(row)[:600], flush=True)
        write_json_atomic(out, {"dataset": args.dataset, "overrides": overrides, "cpu_count": os.cpu_count(),
                                "max_batches": args.max_batches, "rows": rows})  # after every stage: nothing lost
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
