"""Run a list of models on one dataset with one shared configuration, as a resumable leaderboard.

    python -m recbole_lamia.leaderboard --dataset=amazon-beauty --data_path=../shared/datasets
    python -m recbole_lamia.leaderboard --dataset=ml-100k --models=LAMIA,SASRec --max_minutes=30
    python run_recbole_lamia.py --leaderboard --dataset=ml-100k --models=SASRec --set epochs=5

Options:
  --models=ROW,...          rows to run (default: every row of ``rows.ROWS``); a name that is not a row is
                            taken as a RecBole model name
  --max_minutes=M           training budget per row and phase (training + validation time)
  --rerun=ROW,...|all       discard these rows (table row and checkpoints) and train them from scratch
  --resume=ROW,...|all      reopen finished rows and continue from their last saved epoch (e.g. with a
                            larger --max_minutes or --set epochs=...)
  --cold_start_ratio=0.05   share of items held out of training for the cold-start columns (0: off)
  --cold_start_mode=MODE    separate (default): a second training run per row on the cold-start split
                            gives the cold columns, the main row is trained on the full split;
                            shared: one run, trained on the cold-start split, gives every column
  --cold_start_seed=N       seed of the cold item draw (default: --seed)
  --seed=N                  the shared seed (default 2020)
  --set KEY=VALUE           config override for every row (YAML value); --set ROW:KEY=VALUE for one row
  --config_files=FILES      space-separated YAML files for every row
  --out_dir=results         where <dataset>.csv, <dataset>.md and <dataset>.png go
  --checkpoint_dir=saved/leaderboard   per-row checkpoints, logs and phase results
  --threads=N               torch CPU threads per row (default: torch's choice)
  --no_subprocess           run rows in this process (debugging; peak memory is then not per row)
  --list                    print the row table and exit

Each row and phase runs in its own process (``child.py``). The CSV, markdown and plot are rewritten after every row.
Finished rows (status ``early_stopped``, ``max_epochs`` or ``budget``) are kept and skipped on the next run; a row
that failed or was interrupted is run again and continues from its last saved epoch
(``<checkpoint_dir>/<dataset>/<row>/<phase>/last.pth``, through RecBole's ``Trainer.resume_checkpoint``; inside an
epoch that runs longer than 10 minutes, from its last 10-minute point, ``trainer.EpochBatches``), provided it was
written with the same configuration (``epochs``, ``stopping_step`` and the budget may change). Ctrl-C or SIGTERM
stops the running row's process too, and writes the table. Config precedence: the plugin's ``properties/`` YAML <
``--config_files`` < the shared settings (``shared_config``: seed, metrics, ...) < ``--set`` < the row's overrides <
``--set ROW:...``.
"""

import argparse
import collections
import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from recbole_lamia.leaderboard.child import FINISHED, PROGRESS_PREFIX, clean_argv, run_phase_safely
from recbole_lamia.leaderboard.report import read_rows, to_float, upsert_row, write_outputs
from recbole_lamia.leaderboard.rows import DEFAULT_ROWS, ROWS, resolve_rows
from recbole_lamia.leaderboard.trainer import format_seconds
from recbole_lamia.utils import registration
from recbole_lamia.utils.files import write_json_atomic
from recbole_lamia.utils.overrides import parse_overrides

# Keys that may change between an interrupted attempt and its continuation.
RESUMABLE_KEYS = {"epochs", "stopping_step", "show_progress", "state", "checkpoint_dir", "eval_batch_size",
                  "use_gpu", "gpu_id", "semantic_id_cache_dir", "worker"}


def shared_config(data_path=None, seed=2020):
    """What every row shares on top of the dataset's properties YAML."""
    config = {
        "seed": seed,
        "reproducibility": True,
        "train_neg_sample_args": None,  # cross-entropy over all items for every model
        "metrics": ["Recall", "NDCG"],
        "topk": [5, 10],
        "valid_metric": "NDCG@10",
        "show_progress": False,
        "save_dataloaders": False,
        "save_dataset": False,
    }
    if data_path:
        config["data_path"] = os.path.abspath(data_path)
    return config


# How a row's configuration is hashed, newest first. "settings" hashes the plugin YAML values as RecBole merges
# them with the row's overrides, leaving out options at their neutral value (see ``config_fingerprint``);
# "file_bytes" (sessions 3-6) hashed the YAML files' bytes, so even a comment or a new neutral option changed
# it. Checkpoints and results of both are accepted while the row's configuration still gives that hash. The
# form before "file_bytes" did not cover the YAML files at all and is no longer accepted: it would have reused
# the results and checkpoints of the amazon-beauty LAMIA row of item_label_smoothing 0 after the tuned YAML
# had moved to 0.25.
FINGERPRINT_SCHEMES = ("settings", "file_bytes")


@functools.lru_cache(maxsize=1)
def _recbole_yaml_loader():
    from recbole.config import Config

    # It does not use the instance; built once, because each call adds a resolver to yaml.FullLoader.
    return Config._build_yaml_loader(None)


def plugin_settings(model, dataset):
    """The plugin's YAML settings for ``model`` on ``dataset``, merged as RecBole merges them (later files win),
    read with RecBole's own YAML loader (the same number parsing)."""
    import yaml

    settings = {}
    for path in registration.plugin_property_files(model, dataset):
        with open(path, encoding="utf-8") as f:
            settings.update(yaml.load(f.read(), Loader=_recbole_yaml_loader()) or {})
    return settings


def config_fingerprint(model, dataset, phase, config_dict, config_files, cold, scheme="settings"):
    """Hash of everything that must match for a checkpoint to be continued or a finished result to be reused.

    With the current ``scheme`` ("settings") it covers the row's effective plugin settings: the plugin's YAML
    values for ``model`` on ``dataset`` (``properties/...``) overlaid with ``config_dict``, minus the keys that
    may change on a continuation (``RESUMABLE_KEYS``) and minus options at the model's neutral value
    (``NEUTRAL_OPTIONS``: the value that reproduces the model from before the option existed), and minus level
    options the row's quantizer never reads (``unused_level_keys``). So editing a tuned setting starts the row
    afresh, while comments, reformatting, a new option at its neutral value, or a setting the row ignores do not.
    ``--config_files`` are covered by their bytes. ``scheme`` picks an older form (``FINGERPRINT_SCHEMES``).
    """
    if scheme not in FINGERPRINT_SCHEMES:
        raise ValueError(f"scheme must be one of {FINGERPRINT_SCHEMES}, got {scheme!r}")
    files = []
    for path in config_files or []:
        with open(path, "rb") as f:
            files.append((os.path.abspath(path), hashlib.sha256(f.read()).hexdigest()))
    payload = {"model": model, "dataset": dataset, "phase": phase, "files": files, "cold": cold}
    if scheme == "settings":
        from recbole_lamia.tokenizer.item_tokenizer import unused_level_keys

        neutral = registration.neutral_options(model)
        merged = {**plugin_settings(model, dataset), **config_dict}
        ignored = set(RESUMABLE_KEYS) | set(unused_level_keys(merged["quantizer"]) if "quantizer" in merged else ())
        payload["settings"] = {k: v for k, v in merged.items()
                               if k not in ignored and not (k in neutral and v == neutral[k])}
    else:  # the older payload, byte for byte, so that its hashes still match
        payload["config"] = {k: v for k, v in config_dict.items() if k not in RESUMABLE_KEYS}
        hashes = {}
        for path in registration.plugin_property_files(model, dataset):
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, registration.PROPERTIES_DIR)] = hashlib.sha256(f.read()).hexdigest()
        payload["plugin_files"] = hashes
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def accepted_fingerprints(model, dataset, phase, config_dict, config_files, cold):
    """The row's fingerprint under every scheme, the current one first: what its checkpoints may carry."""
    return [config_fingerprint(model, dataset, phase, config_dict, config_files, cold, scheme=scheme)
            for scheme in FINGERPRINT_SCHEMES]


def migrate_phase(run_dir, accepted):
    """Move a phase made under an older fingerprint scheme (``accepted[1:]``) to the current one (``accepted[0]``).

    Rewrites the fingerprint in ``result.json``, ``spec.json`` (``ranks.load_phase`` matches the two) and
    ``last.pth`` (which ``--resume`` checks), so that a later neutral edit of the YAML files, which changes the
    older hash, does not orphan the phase. Returns the upgraded result, or None when there was nothing to move.
    """
    result_file = os.path.join(run_dir, "result.json")
    if not os.path.exists(result_file):
        return None
    with open(result_file, encoding="utf-8") as f:
        result = json.load(f)
    if result.get("fingerprint") not in accepted[1:]:
        return None
    current = accepted[0]
    last_file = os.path.join(run_dir, "last.pth")
    if os.path.exists(last_file):
        from recbole_lamia.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

        try:
            state = load_checkpoint(last_file)
        except CheckpointError:  # unsafe or torn: left alone, and refused again when resumed
            state = {}
        if state.get("leaderboard", {}).get("fingerprint") in accepted[1:]:
            state["leaderboard"]["fingerprint"] = current
            save_checkpoint(state, last_file)
    spec_file = os.path.join(run_dir, "spec.json")
    if os.path.exists(spec_file):
        with open(spec_file, encoding="utf-8") as f:
            phase_spec = json.load(f)
        phase_spec.update(fingerprint=current, accepted_fingerprints=sorted(accepted))
        write_json_atomic(spec_file, phase_spec)
    result["fingerprint"] = current
    write_json_atomic(result_file, result)
    return result


def row_finished(record):
    """A row is kept on the next run when its training (and cold-start training, if any) finished."""
    cold_status = record.get("cold_status") or ""
    return record.get("status") in FINISHED and (cold_status in FINISHED or cold_status == "")


def _safe_name(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _describe_exit(returncode):
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _phases(ratio, mode):
    """``[(phase, cold_start settings)]`` of a row."""
    if not ratio or ratio <= 0:
        return [("main", {"ratio": 0.0})]
    if mode == "shared":
        return [("main", {"ratio": ratio, "train_without": True, "evaluate": True})]
    return [("main", {"ratio": ratio, "train_without": False, "evaluate": False}),
            ("cold", {"ratio": ratio, "train_without": True, "evaluate": True})]


KEPT_SUFFIX = ".kept"  # a reopened row's finished result.json, set aside while --resume continues it


def _settle_kept_result(result_file):
    """A result set aside by ``--resume``: dropped if a newer finished result replaced it, else put back."""
    kept = result_file + KEPT_SUFFIX
    if not os.path.exists(kept):
        return
    current = {}
    if os.path.exists(result_file):
        with open(result_file, encoding="utf-8") as f:
            current = json.load(f)
    if current.get("status") in FINISHED:
        os.remove(kept)
    else:
        os.replace(kept, result_file)


def _run_in_subprocess(spec, log):
    run_dir = spec["run_dir"]
    spec_file = os.path.join(run_dir, "spec.json")
    if not os.path.exists(spec_file):
        raise FileNotFoundError(f"{spec_file}: run_leaderboard writes the phase spec before starting its child")
    log_path = os.path.join(run_dir, "log.txt")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(spec["threads"])
    tail = collections.deque(maxlen=30)
    with open(log_path, "a", encoding="utf-8", buffering=1) as log_file:  # line-buffered: tail -f shows progress
        log_file.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec['row']} [{spec['phase']}] =====\n")
        proc = subprocess.Popen([sys.executable, "-m", "recbole_lamia.leaderboard.child", spec_file],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
        try:
            for line in proc.stdout:
                log_file.write(line)
                tail.append(line.rstrip())
                if line.startswith(PROGRESS_PREFIX):
                    log(line[len(PROGRESS_PREFIX):].strip())
            returncode = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    result = None
    if os.path.exists(spec["result_file"]):
        with open(spec["result_file"], encoding="utf-8") as f:
            result = json.load(f)
    if result is None:
        last = " | ".join(line for line in tail if line.strip())[-800:]
        result = {"status": "error", "error": f"process {_describe_exit(returncode)} before writing a result "
                                              f"(see {log_path}); last output: {last}"}
    return result


def _merge_phase(record, phase, result, mode):
    if phase == "main":
        record.update({k: v for k, v in result.items() if k not in ("traceback", "fingerprint")})
        record["config_hash"] = result.get("fingerprint", "")[:10]
        if mode == "shared":
            record["cold_status"] = result.get("status")
            record["cold_epochs_run"] = result.get("epochs_run")
        return
    record["cold_status"] = result.get("status")
    record["cold_epochs_run"] = result.get("epochs_run")
    for key in ("cold_recall@10", "cold_ndcg@10", "cold_test_cases", "cold_set", "cold_removed_train_samples"):
        if key in result:
            record[key] = result[key]
    if result.get("status") == "error":
        record["error"] = f"cold-start run: {result.get('error')}"


def run_leaderboard(dataset, data_path=None, models=None, rows=None, overrides=None, row_overrides=None,
                    config_files=None, seed=2020, max_minutes=None, rerun=(), resume=(), cold_start_ratio=0.05,
                    cold_start_mode="separate", cold_start_seed=None, out_dir="results",
                    checkpoint_dir="saved/leaderboard", isolate=True, threads=None, interrupt_after_epoch=None,
                    log=None):
    """Run the leaderboard; return the table (a list of row dicts, as in the CSV).

    ``rows`` adds or replaces row definitions (``{name: RowSpec}``); ``overrides`` applies to every row and
    ``row_overrides`` (``{name: {key: value}}``) to one. ``threads`` sets torch's CPU threads per row (default:
    torch's choice; recorded in the device column). ``interrupt_after_epoch`` (``{row: epoch index}``)
    kills the row's process right after that epoch's checkpoint, to test resuming.
    """
    if cold_start_mode not in ("separate", "shared"):
        raise ValueError(f"cold_start_mode must be 'separate' or 'shared', got {cold_start_mode!r}")
    started = time.time()
    log = log or (lambda message: print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True))
    names = list(models or DEFAULT_ROWS)
    specs = resolve_rows(names, rows)
    rerun_set = set(names) if "all" in rerun else set(rerun)
    resume_set = set(names) if "all" in resume else set(resume)
    overrides, row_overrides = dict(overrides or {}), dict(row_overrides or {})
    cold_seed = seed if cold_start_seed is None else cold_start_seed
    base = shared_config(data_path, seed)
    mode = cold_start_mode if cold_start_ratio and cold_start_ratio > 0 else "off"
    meta = {"seed": seed, "threads": threads, "cold_start_ratio": cold_start_ratio, "cold_start_mode": mode,
            "cold_start_seed": cold_seed, "max_minutes (per row and phase)": max_minutes,
            "--set": json.dumps(overrides, sort_keys=True, default=str), "config_files": config_files}
    paths = {ext: os.path.join(out_dir, f"{dataset}.{ext}") for ext in ("csv", "md", "png")}
    table = read_rows(paths["csv"])
    position = {r.get("row"): i for i, r in enumerate(table)}
    durations, failed = [], []

    for number, (name, spec) in enumerate(specs, 1):
        prefix = f"({number}/{len(specs)}) {name}"
        row_dir = os.path.join(checkpoint_dir, dataset, _safe_name(name))
        existing = table[position[name]] if name in position else None
        row_config = {**base, **overrides, **spec.overrides, **row_overrides.get(name, {})}
        phases = _phases(cold_start_ratio, cold_start_mode)
        main_cold = dict(phases[0][1], seed=cold_seed)
        main_hashes = [fp[:10] for fp in accepted_fingerprints(spec.model, dataset, "main", row_config,
                                                               config_files, main_cold)]
        for phase, _ in phases:  # a result set aside by a --resume whose leaderboard process was killed
            _settle_kept_result(os.path.join(row_dir, phase, "result.json"))
        if name in rerun_set:
            shutil.rmtree(row_dir, ignore_errors=True)
        elif existing is not None and row_finished(existing) and name not in resume_set:
            note = "" if existing.get("config_hash") in ("", None, *main_hashes) else (
                " (it was made with another configuration; use --rerun to replace it)")
            log(f"{prefix}: finished earlier ({existing.get('status')}), kept{note}")
            if existing.get("config_hash") in main_hashes[1:]:
                # Made under an older fingerprint scheme with this configuration: move its phases and its table
                # row to the current hash, so that a later neutral edit of the YAML files does not orphan it.
                for phase, cold in phases:
                    migrate_phase(os.path.join(row_dir, phase), accepted_fingerprints(
                        spec.model, dataset, phase, row_config, config_files, dict(cold, seed=cold_seed)))
                table = upsert_row(out_dir, dataset, dict(existing, config_hash=main_hashes[0]), meta)
                position = {r.get("row"): i for i, r in enumerate(table)}
            continue
        reopen = name in resume_set
        record = {"row": name, "model": spec.model, "cold_mode": mode,
                  "overrides": json.dumps({**overrides, **spec.overrides, **row_overrides.get(name, {})},
                                          sort_keys=True, default=str),
                  "process": "subprocess" if isolate else "in-process"}
        row_start = time.time()
        log(f"{prefix}: model {spec.model}, overrides {record['overrides']}")
        interrupted = False
        for phase, cold in phases:
            cold = dict(cold, seed=cold_seed)
            run_dir = os.path.join(row_dir, phase)
            os.makedirs(run_dir, exist_ok=True)
            accepted = accepted_fingerprints(spec.model, dataset, phase, row_config, config_files, cold)
            fingerprint = accepted[0]
            result_file = os.path.join(run_dir, "result.json")
            result = None
            if os.path.exists(result_file) and not reopen:
                with open(result_file, encoding="utf-8") as f:
                    previous = json.load(f)
                if previous.get("status") in FINISHED and previous.get("fingerprint") in accepted:
                    log(f"{prefix} [{phase}]: finished earlier ({previous['status']}), reusing its result")
                    result = migrate_phase(run_dir, accepted) or previous  # an older scheme's hash moves on
            if result is None:
                if os.path.exists(result_file):
                    # A reopened row's finished result is set aside, not deleted: it comes back if the
                    # continuation fails. It must not stay in place, where the child's result is read.
                    if reopen:
                        os.replace(result_file, result_file + KEPT_SUFFIX)
                    else:
                        os.remove(result_file)
                phase_spec = {
                    "row": name, "phase": phase, "model": spec.model, "dataset": dataset,
                    "config_dict": row_config, "config_files": config_files, "run_dir": os.path.abspath(run_dir),
                    "result_file": os.path.abspath(result_file), "fingerprint": fingerprint,
                    "accepted_fingerprints": sorted(accepted), "cold_start": cold,
                    "budget_seconds": None if max_minutes is None else float(max_minutes) * 60, "resume": True,
                    "interrupt_after_epoch": (interrupt_after_epoch or {}).get(name), "threads": threads,
                }
                log(f"{prefix} [{phase}]: starting" + (" (continuing from its last saved epoch if any)"
                                                      if os.path.exists(os.path.join(run_dir, "last.pth")) else ""))
                # The phase's recipe, also for later analyses (ranks.load_phase) of in-process rows.
                write_json_atomic(os.path.join(run_dir, "spec.json"), phase_spec)
                try:
                    if isolate:
                        result = _run_in_subprocess(phase_spec, log)
                    else:
                        with clean_argv():
                            result = run_phase_safely(dict(phase_spec, isolated=False), progress=log)
                except KeyboardInterrupt:
                    result = {"status": "error", "error": "interrupted (Ctrl-C or SIGTERM); rerun to continue from "
                                                          "the last saved epoch"}
                    interrupted = True
                result["fingerprint"] = fingerprint
                if result.get("status") in FINISHED:
                    write_json_atomic(result_file, result)
                _settle_kept_result(result_file)
            _merge_phase(record, phase, result, mode)
            if result.get("status") not in FINISHED:
                log(f"{prefix} [{phase}]: FAILED: {result.get('error')}")
                if phase == "main" and len(phases) > 1:
                    record["cold_status"] = "skipped"  # the cold-start run of a failing model would fail too
                break
        record["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        resume_failed = reopen and existing is not None and row_finished(existing) and not row_finished(record)
        if resume_failed:
            # --resume of a finished row that failed or was interrupted: its earlier figures stay, with the
            # failure in the error column. (best.pth may hold a later epoch if validation improved before it.)
            log(f"{prefix}: continuing it failed ({record.get('error')}); the earlier {existing.get('status')} "
                "row is kept, and a rerun with --resume continues from the last saved epoch")
            record = dict(existing, error=f"--resume failed, this row shows the earlier result: {record.get('error')}")
        # Under a lock, re-read: another leaderboard process on this dataset may have written rows meanwhile.
        table = upsert_row(out_dir, dataset, record, meta)
        position = {r.get("row"): i for i, r in enumerate(table)}
        elapsed = time.time() - row_start
        durations.append(elapsed)
        left = len(specs) - number
        ndcg = to_float(record.get("test_ndcg@10"))
        log(f"{prefix}: {record.get('status')}, test NDCG@10 {ndcg:.4f}, {format_seconds(elapsed)}; "
            f"leaderboard {format_seconds(time.time() - started)}"
            + (f", about {format_seconds(left * sum(durations) / len(durations))} left for {left} rows"
               if left else ""))
        if not row_finished(record) or resume_failed:
            failed.append(name)
        if interrupted:
            log("interrupted; the table keeps the finished rows. Rerun the same command to continue.")
            raise KeyboardInterrupt
    if not os.path.exists(paths["csv"]):
        write_outputs(out_dir, dataset, table, meta)
    log(f"leaderboard written: {paths['md']}, {paths['csv']}, {paths['png']}"
        + (f"; rows not finished: {', '.join(failed)}" if failed else ""))
    return table


def parse_sets(items):
    """``--set`` items -> ``(shared overrides, {row: overrides})``; ``ROW:KEY=VALUE`` applies to one row."""
    overrides, per_row = {}, {}
    for item in items:
        key, value = next(iter(parse_overrides([item], option="--set").items()))
        row, sep, row_key = (part.strip() for part in key.partition(":"))
        if sep and not (row and row_key):
            raise SystemExit(f"--set expects KEY=VALUE or ROW:KEY=VALUE, got {item!r}")
        if sep:
            per_row.setdefault(row, {})[row_key] = value
        else:
            overrides[key] = value
    return overrides, per_row


def _split_names(text):
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def build_parser():
    """The leaderboard's command-line parser (also read by the device staging script, for its job lists)."""
    parser = argparse.ArgumentParser(prog="python -m recbole_lamia.leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--models", default=",".join(DEFAULT_ROWS))
    parser.add_argument("--max_minutes", type=float, default=None)
    parser.add_argument("--rerun", default="")
    parser.add_argument("--resume", default="")
    parser.add_argument("--cold_start_ratio", type=float, default=0.05)
    parser.add_argument("--cold_start_mode", choices=("separate", "shared"), default="separate")
    parser.add_argument("--cold_start_seed", type=int, default=None)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--set", action="append", default=[], metavar="[ROW:]KEY=VALUE")
    parser.add_argument("--config_files", default=None)
    parser.add_argument("--out_dir", default="results")
    parser.add_argument("--checkpoint_dir", default=os.path.join("saved", "leaderboard"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no_subprocess", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--interrupt_after_epoch", default="", help=argparse.SUPPRESS)  # ROW:EPOCH,... (tests)
    return parser


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within it, SIGTERM (``kill``, a job scheduler) stops the leaderboard as Ctrl-C does: the running row's
    child process is terminated, its last saved epoch kept, and the finished rows written."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    """The leaderboard command (``python -m recbole_lamia.leaderboard``); returns the exit status."""
    with sigterm_as_interrupt():
        return _main(argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.list:
        for name, spec in ROWS.items():
            print(f"{name:22s} {spec.model:10s} {json.dumps(spec.overrides):70s} {spec.description}")
        return 0
    overrides, per_row = parse_sets(args.set)
    interrupts = {k: int(v) for k, v in (item.rsplit(":", 1) for item in _split_names(args.interrupt_after_epoch))}
    table = run_leaderboard(
        args.dataset, data_path=args.data_path, models=_split_names(args.models), overrides=overrides,
        row_overrides=per_row, config_files=args.config_files.split() if args.config_files else None,
        seed=args.seed, max_minutes=args.max_minutes, rerun=_split_names(args.rerun),
        resume=_split_names(args.resume), cold_start_ratio=args.cold_start_ratio,
        cold_start_mode=args.cold_start_mode, cold_start_seed=args.cold_start_seed, out_dir=args.out_dir,
        checkpoint_dir=args.checkpoint_dir, isolate=not args.no_subprocess, threads=args.threads,
        interrupt_after_epoch=interrupts)
    requested = set(_split_names(args.models))
    return 0 if all(row_finished(r) and not r.get("error") for r in table if r.get("row") in requested) else 1
