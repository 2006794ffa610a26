"""Which items share a full semantic ID before collision handling, and what their texts say.

    python benchmarks/palette_collisions.py --dataset=amazon-beauty --data_path=../shared/datasets \
        --set semantic_id_cache_dir=saved/benchmark_semantic_ids

Builds the LAMIA dataset (item embeddings come from the semantic-ID cache when present), reruns the
configured quantizer on them to get the raw codes, groups items whose codes are identical, and prints the
largest groups with their item texts. Writes results/palette_collisions_<dataset>.json.
"""

import argparse
import collections
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def collision_groups(codes):
    """Lists of row indices that share one full code, largest first (singletons left out)."""
    groups = collections.defaultdict(list)
    for row, code in enumerate(map(tuple, codes)):
        groups[code].append(row)
    return sorted((g for g in groups.values() if len(g) > 1), key=len, reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--model", default="LAMIA")
    parser.add_argument("--groups", type=int, default=5, help="largest groups to print")
    parser.add_argument("--texts", type=int, default=4, help="texts to print per group")
    parser.add_argument("--set", action="append", default=[], help="key=value (YAML value) config override")
    args = parser.parse_args()
    from recbole.config import Config
    from recbole.data import create_dataset

    import recbole_lamia  # noqa: F401
    from recbole_lamia.data.cache import ArrayCache
    from recbole_lamia.data.item_text import ItemTextBuilder
    from recbole_lamia.quantizer import get_quantizer_class
    from recbole_lamia.quantizer.base import mean_level_nmi
    from recbole_lamia.tokenizer.item_tokenizer import ItemTokenizer, tokenizer_params
    from recbole_lamia.utils.files import write_json_atomic
    from recbole_lamia.utils.overrides import parse_overrides

    config_dict = parse_overrides(args.set)
    if args.data_path:
        config_dict["data_path"] = os.path.abspath(args.data_path)
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv
    config = Config(model=args.model, dataset=args.dataset, config_dict=config_dict)
    dataset = create_dataset(config)
    params = tokenizer_params(config)
    texts, _ = ItemTextBuilder(params["item_text_fields"], params["item_text_separator"],
                               params["item_text_ignore_values"]).build(dataset)
    tokenizer = ItemTokenizer(params)
    key = tokenizer.embedding_key(texts)
    cache = ArrayCache(os.path.join(params["semantic_id_cache_dir"], dataset.dataset_name))
    embeddings = cache.load(tokenizer.embedding_entry(key), key)[0]["embeddings"]  # create_dataset filled it
    raw = get_quantizer_class(params["quantizer"])(params).fit_encode(embeddings[1:])
    groups = collision_groups(raw)
    summary = {
        "dataset": args.dataset, "overrides": config_dict, "levels": int(raw.shape[1]),
        "items": int(len(raw)), "items_in_groups": int(sum(len(g) for g in groups)), "groups": len(groups),
        "largest_groups": [len(g) for g in groups[:10]], "mean_level_nmi": mean_level_nmi(raw),
        "examples": [{"size": len(g), "texts": [texts[row + 1] for row in g[:args.texts]]}
                     for g in groups[:args.groups]],
    }
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    out = os.path.join(ROOT, "results", f"palette_collisions_{args.dataset}.json")
    write_json_atomic(out, summary, ensure_ascii=False)


if __name__ == "__main__":
    main()
