"""Stage the semantic-ID cache entries that leaderboard rows load, for a machine that cannot fit them.

    python benchmarks/device/stage_cache.py DATA_PATH CACHE_DIR DEST_DIR DATASET ROW[;KEY=VALUE...] ...

Run by ``fetch_wheels.sh`` with the stub packages first on ``PYTHONPATH`` (faiss, the MiniLM weights): each row's
dataset is built exactly as the leaderboard's child builds it (``shared_config`` < row overrides < the
``KEY=VALUE`` pairs, which are what ``--set ROW:KEY=VALUE`` gives the row), and every cache lookup must hit.
With the codes cached, the tokenizer reads only the JSON of the embedding entry, so the copy holds each
codes entry whole and each embedding entry's JSON alone (a 16-aspect palette is 50 MB; its JSON 1 KB).
Rows without a tokenizer (SASRec, ...) are skipped. Exits non-zero on the first cache miss.
"""

import os
import shutil
import sys

from recbole_lamia.utils.overrides import parse_overrides


def parse_row(text):
    """``"LAMIA;codebook_size=4096"`` -> ``("LAMIA", {"codebook_size": 4096})`` (YAML values)."""
    name, *pairs = text.split(";")
    return name, parse_overrides([pair for pair in pairs if pair], option=f"row {text!r}")


def main(argv):
    data_path, cache_dir, dest, dataset_name, *row_texts = argv
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv
    from recbole.config import Config
    from recbole.data import create_dataset

    import recbole_lamia  # noqa: F401  (registers the models and their dataset classes)
    from recbole_lamia.data import cache as cache_module
    from recbole_lamia.leaderboard.rows import resolve_rows
    from recbole_lamia.leaderboard.runner import shared_config

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
    for text in row_texts:
        name, extra = parse_row(text)
        (_, spec), = resolve_rows([name])
        if spec.model not in ("LAMIA", "TIGER"):
            print(f"{text}: {spec.model} has no tokenizer, nothing to stage", file=sys.stderr)
            continue
        config_dict = {**shared_config(data_path), "semantic_id_cache_dir": cache_dir, **spec.overrides, **extra}
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
