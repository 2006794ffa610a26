"""Fit LAMIA tokenizer variants on a dataset and print their semantic-ID diagnostics side by side.

    python benchmarks/tokenizer_variants.py --dataset=amazon-beauty --data_path=../shared/datasets \
        --set semantic_id_cache_dir=saved/benchmark_semantic_ids \
        --variant contrastive_negatives=similar --variant codebook_size=512

Each ``--variant`` is a comma-separated list of KEY=VALUE (YAML values) on top of the shared ``--set``
overrides; an empty variant (``--variant ""``) is the configuration as it is. Palettes and codes go to the
semantic-ID cache, so a later training run with the same settings reuses them. Writes
``results/tokenizer_variants_<dataset><suffix>.json``: per variant the fit times, collision rate before
handling, mean level NMI, code usage and the palette's aspect similarity.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summarise(report):
    """The diagnostics of one tokenizer run that tell variants apart."""
    codes, embedding = report["codes"], report["embedding"]
    diag, coll = codes.get("diagnostics", {}), codes.get("collisions", {})
    stats = embedding.get("stats", {})
    return {
        "embedding_seconds": embedding.get("seconds"), "code_seconds": codes.get("seconds"),
        "embedding_cached": embedding.get("cached"), "codes_cached": codes.get("cached"),
        "collision_rate_before": coll.get("collision_rate_before"), "items_moved": coll.get("items_moved"),
        "mean_level_nmi": diag.get("mean_level_nmi"), "code_usage_per_level": diag.get("code_usage_per_level"),
        "aspect_similarity_offdiag": stats.get("aspect_similarity_offdiag"),
        "tuning_history": embedding.get("history"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE override for every variant")
    parser.add_argument("--variant", action="append", default=[], help="KEY=VALUE,... (one variant)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output_suffix", default="")
    args = parser.parse_args()
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset

    import recbole_lamia  # noqa: F401  (registers LAMIA and its dataset)
    from recbole_lamia.utils.files import write_json_atomic
    from recbole_lamia.utils.overrides import parse_overrides, parse_pairs

    if args.threads:
        torch.set_num_threads(args.threads)
        import faiss

        faiss.omp_set_num_threads(args.threads)
    shared = parse_overrides(args.set)
    if args.data_path:
        shared["data_path"] = os.path.abspath(args.data_path)
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv
    out_path = os.path.join(ROOT, "results", f"tokenizer_variants_{args.dataset}{args.output_suffix}.json")
    results = []
    for text in args.variant or [""]:
        variant = parse_pairs(text)
        start = time.time()
        dataset = create_dataset(Config(model="LAMIA", dataset=args.dataset, config_dict={**shared, **variant}))
        row = {"variant": variant, "wall_seconds": round(time.time() - start, 1),
               **summarise(dataset.semantic_id_report)}
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "tuning_history"}), flush=True)
        write_json_atomic(out_path, {"dataset": args.dataset, "shared": shared, "threads": args.threads,
                                     "variants": results})  # after every variant: nothing lost


if __name__ == "__main__":
    main()
