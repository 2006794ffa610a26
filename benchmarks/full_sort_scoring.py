"""Time LAMIA's exact full-sort scoring two ways, side by side, on amazon-beauty's shapes.

    python benchmarks/full_sort_scoring.py --threads=1

* gather: sum over the h levels of ``log_probs[level][:, codes[:, level]]`` (h reads of ``[B, n_items]``).
* matmul (what ``LAMIA.full_sort_predict`` does): one ``[B, h*d] @ [h*d, n_items]`` product of the
  queries with the items' concatenated token embeddings, minus the h log-normalisers.

Both give the same scores (the max difference is printed). Writes results/full_sort_scoring.json.
"""

import argparse
import json
import os
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_call(fn, inputs, repeats):
    fn(*inputs)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn(*inputs)
    return (time.perf_counter() - start) / repeats


def gather_scores(queries, tables, codes):
    """Sum over levels of each item's token log-probability, one ``[B, n_items]`` gather per level."""
    log_probs = torch.log_softmax(torch.einsum("bhd,hkd->bhk", queries, tables), dim=-1)
    scores = log_probs[:, 0][:, codes[:, 0]]
    for level in range(1, codes.size(1)):
        scores = scores + log_probs[:, level][:, codes[:, level]]
    return scores


def matmul_scores(queries, tables, codes):
    """The same scores as one product with the items' concatenated token vectors, minus the normalisers.

    The ``[n_items, h*d]`` table is built inside, as ``LAMIA.item_logits`` does on every call.
    """
    item_vectors = tables[torch.arange(codes.size(1)), codes].flatten(1)
    normalisers = torch.logsumexp(torch.einsum("bhd,hkd->bhk", queries, tables), dim=-1).sum(-1)
    return queries.flatten(1) @ item_vectors.t() - normalisers.unsqueeze(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12102, help="amazon-beauty's item_num (padding included)")
    parser.add_argument("--users", type=int, default=256, help="users per evaluation batch")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--levels", default="4,8,16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for h in (int(v) for v in args.levels.split(",")):
        queries = torch.randn(args.users, h, args.hidden) * 0.1
        tables = torch.randn(h, args.codebook, args.hidden) * 0.1
        codes = torch.randint(0, args.codebook, (args.items, h))

        with torch.no_grad():
            inputs = (queries, tables, codes)
            diff = (gather_scores(*inputs) - matmul_scores(*inputs)).abs().max().item()
            t_gather = time_call(gather_scores, inputs, args.repeats)
            t_matmul = time_call(matmul_scores, inputs, args.repeats)
        row = {"h": h, "gather_seconds": round(t_gather, 4), "matmul_seconds": round(t_matmul, 4),
               "speedup": round(t_gather / t_matmul, 2), "max_abs_difference": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = os.path.join(ROOT, "results", "full_sort_scoring.json")
    with open(out + ".tmp", "w") as f:
        json.dump({"args": vars(args), "torch_threads": torch.get_num_threads(), "rows": rows}, f, indent=1)
    os.replace(out + ".tmp", out)
    print(f"written {out}")


if __name__ == "__main__":
    main()
