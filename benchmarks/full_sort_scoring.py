"""Time LAMIA's exact full-sort scoring two ways, side by side, on amazon-beauty's shapes.

    python benchmarks/full_sort_scoring.py --threads=1

* matmul: ``LAMIA.full_sort_predict`` itself, i.e. one ``[B, h*d] @ [h*d, n_items]`` product of the queries
  with the items' concatenated token embeddings, minus the h log-normalisers.
* gather: the definition it replaces, the sum over the h levels of ``level_log_probs[level][:, codes[:, level]]``
  (h reads of ``[B, n_items]``), from the model's own ``level_log_probs``.

Both run LAMIA's code on random weights and random codes (``model_at_shapes``; the model's equivalence on trained
weights is tested in ``tests/``). The max difference is printed. Writes results/full_sort_scoring.json.
"""

import argparse
import json
import os
import time
from types import SimpleNamespace

import torch
from torch import nn

from recbole_lamia.model.sequential_recommender.lamia import LAMIA
from recbole_lamia.utils.files import write_json_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_call(fn, inputs, repeats):
    fn(*inputs)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn(*inputs)
    return (time.perf_counter() - start) / repeats


def model_at_shapes(n_items, levels, codebook, hidden, users):
    """What LAMIA's scoring methods read, with random weights and codes; no dataset is needed.

    ``_history_output`` returns a fixed ``[users, hidden]`` batch of sequence outputs.
    """
    codes = torch.randint(0, codebook, (n_items, levels))
    offsets = torch.arange(levels) * codebook
    model = SimpleNamespace(
        n_levels=levels, hidden_size=hidden, level_sizes=[codebook] * levels, level_offsets=offsets,
        item_codes=codes, item_token_index=codes + offsets, beam_search=False,
        training=True,  # the unfolded product on every call, as timed here (evaluation folds it, cached)
        level_query=nn.Linear(hidden, levels * hidden), token_embedding=nn.Embedding(levels * codebook + 1, hidden))
    nn.init.normal_(model.token_embedding.weight, std=0.1)
    output = torch.randn(users, hidden)
    model._history_output = lambda interaction: output
    for name in ("level_logits", "level_log_probs", "item_logits", "item_token_vectors"):
        setattr(model, name, getattr(LAMIA, name).__get__(model))
    return model


def matmul_scores(model):
    """``LAMIA.full_sort_predict`` without the evaluation cache of folded item vectors (column 0, padding, is -inf)."""
    return LAMIA.full_sort_predict(model, None)


def gather_scores(model):
    """Sum over levels of each item's token log-probability, one ``[B, n_items]`` gather per level."""
    log_probs = model.level_log_probs(model._history_output(None))
    scores = log_probs[0][:, model.item_codes[:, 0]]
    for level in range(1, model.n_levels):
        scores = scores + log_probs[level][:, model.item_codes[:, level]]
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12102, help="amazon-beauty's item_num (padding included)")
    parser.add_argument("--users", type=int, default=256, help="users per evaluation batch")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--codebook", type=int, default=2048, help="codes per aspect (amazon-beauty's setting)")
    parser.add_argument("--levels", default="4,8,16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for h in (int(v) for v in args.levels.split(",")):
        model = model_at_shapes(args.items, h, args.codebook, args.hidden, args.users)
        with torch.no_grad():
            inputs = (model,)
            diff = (gather_scores(model) - matmul_scores(model))[:, 1:].abs().max().item()
            t_gather = time_call(gather_scores, inputs, args.repeats)
            t_matmul = time_call(matmul_scores, inputs, args.repeats)
        row = {"h": h, "gather_seconds": round(t_gather, 4), "matmul_seconds": round(t_matmul, 4),
               "speedup": round(t_gather / t_matmul, 2), "max_abs_difference": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = os.path.join(ROOT, "results", "full_sort_scoring.json")
    write_json_atomic(out, {"args": vars(args), "torch_threads": torch.get_num_threads(), "rows": rows})
    print(f"written {out}")


if __name__ == "__main__":
    main()
