"""Stage the semantic-ID cache entries that leaderboard rows load, for a machine that cannot fit them.

    python benchmarks/device/stage_cache.py DATA_PATH CACHE_DIR DEST_DIR DATASET ROW[;KEY=VALUE...] ...
    python benchmarks/device/stage_cache.py DATA_PATH CACHE_DIR DEST_DIR DATASET --jobs "$JOBS"

Run by ``fetch_wheels.sh`` with the stub packages first on ``PYTHONPATH`` (faiss, the MiniLM weights): each row's
dataset is built exactly as the leaderboard's child builds it (``shared_config`` < row overrides < the
``KEY=VALUE`` pairs, which are what ``--set ROW:KEY=VALUE`` gives the row), and every cache lookup must hit.
With the codes cached, the tokenizer reads only the JSON of the embedding entry, so the copy holds each
codes entry whole and each embedding entry's JSON alone (a 16-aspect palette is 50 MB; its JSON 1 KB).
Rows without a tokenizer (SASRec, ...) are skipped. Exits non-zero on the first cache miss.
``--jobs`` reads the rows and their ``--set`` overrides from a ``gpu_rows.sh`` job list, so that what is staged
is what the device runs.
"""

import json
import os
import shutil
import sys

from recbole_lamia.leaderboard.runner import build_parser, parse_sets
from recbole_lamia.utils.overrides import parse_overrides

# gpu_rows.sh sets it for every job; a job that set it too would look for its IDs where nothing is staged.
CACHE_KEY = "semantic_id_cache_dir"


def parse_row(text):
    """``"LAMIA;codebook_size=4096"`` -> ``("LAMIA", {"codebook_size": 4096})`` (YAML values)."""
    name, *pairs = text.split(";")
    return name, parse_overrides([pair for pair in pairs if pair], option=f"row {text!r}")


def rows_from_jobs(jobs):
    """``[(row, seed, shared, per_row)]`` of a ``gpu_rows.sh`` job list ("GROUP ROW [leaderboard arguments]" per
    line), each distinct one once: the job's ``--seed``, its ``--set KEY=VALUE`` overrides (below the row's own
    settings, as in the leaderboard) and its ``--set ROW:KEY=VALUE`` ones for its own row (above them). The
    arguments are split on whitespace, as ``gpu_rows.sh`` splits them, and read by the leaderboard's own parser, so
    an argument the leaderboard would refuse fails here, before the device is started. A ``cli`` job (the user's
    command, ``run_recbole_lamia.py``) loads the row's default IDs: its arguments must be training settings
    (``--epochs``, ``--nproc``, ...), which do not change the IDs."""
    parser = build_parser()
    rows = []
    for line in jobs.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) < 2:
            raise SystemExit(f"job {line.strip()!r}: expected GROUP ROW [leaderboard arguments]")
        group, row, *arguments = words
        if group == "cli":
            entry = (row, 2020, {}, {})
            if entry not in rows:
                rows.append(entry)
            continue
        known = parser.parse_args(arguments)
        if known.config_files:
            raise SystemExit(f"job {line.strip()!r}: --config_files is not staged; put the settings in --set")
        shared, per_row = parse_sets(known.set)
        per_row = per_row.get(row, {})
        if CACHE_KEY in shared or CACHE_KEY in per_row:
            raise SystemExit(f"job {line.strip()!r}: gpu_rows.sh sets {CACHE_KEY} itself (to the staged cache)")
        entry = (row, known.seed, shared, per_row)
        if entry not in rows:
            rows.append(entry)
    return rows


def main(argv):
    data_path, cache_dir, dest, dataset_name, *row_texts = argv
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv
    from recbole.config import Config
    from recbole.data import create_dataset

    import recbole_lamia  # noqa: F401  (registers the models and their dataset classes)
    from recbole_lamia.data import cache as cache_module
    from recbole_lamia.leaderboard.rows import resolve_rows
    from recbole_lamia.leaderboard.runner import shared_config

    if row_texts[:1] == ["--jobs"]:
        if len(row_texts) != 2:
            sys.exit("--jobs takes one argument, the job list")
        rows = rows_from_jobs(row_texts[1])
    else:
        seed = build_parser().get_default("seed")
        rows = [(name, seed, {}, extra) for name, extra in map(parse_row, row_texts)]

    touched = []  # (entry name, whole entry or JSON only)
    original_load, original_meta = cache_module.ArrayCache.load, cache_module.ArrayCache.load_metadata

    def must_hit(loaded, directory, name, key):
        if loaded is None:
            sys.exit(f"semantic-ID cache MISS: {os.path.join(directory, name)} (key {key[:16]}); the device run "
                     "would try to rebuild it and fail. Build it here first (tokenizer_variants.py or a CPU run).")
        return loaded

    def load(self, name, key):
        touched.append((name, True))
        return must_hit(original_load(self, name, key), self.directory, name, key)

    def load_metadata(self, name, key):
        touched.append((name, False))
        return must_hit(original_meta(self, name, key), self.directory, name, key)

    cache_module.ArrayCache.load, cache_module.ArrayCache.load_metadata = load, load_metadata
    os.makedirs(dest, exist_ok=True)
    for name, seed, shared, extra in rows:
        text = f"{name} (seed {seed}, --set {json.dumps(shared)}, --set {name}:{json.dumps(extra)})"
        (_, spec), = resolve_rows([name])
        if spec.model not in ("LAMIA", "TIGER"):
            print(f"{text}: {spec.model} has no tokenizer, nothing to stage", file=sys.stderr)
            continue
        # The leaderboard's precedence: shared < --set KEY=VALUE < the row's own settings < --set ROW:KEY=VALUE.
        config_dict = {**shared_config(data_path, seed), **shared, CACHE_KEY: cache_dir, **spec.overrides, **extra}
        start = len(touched)
        dataset = create_dataset(Config(model=spec.model, dataset=dataset_name, config_dict=config_dict))
        entries = touched[start:]
        print(f"{text}: semantic IDs {tuple(dataset.item_semantic_ids.shape)} from {entries}", file=sys.stderr)
        for entry, whole in entries:
            source = os.path.join(cache_dir, dataset_name, entry)
            shutil.copy2(source + ".json", dest)
            if whole:
                shutil.copy2(source + ".npz", dest)


if __name__ == "__main__":
    main(sys.argv[1:])
