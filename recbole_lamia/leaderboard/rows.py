"""The leaderboard's rows: a RecBole model name plus a config override, in one table users can extend.

Add a row by adding an entry to ``ROWS`` (or pass ``rows={...}`` to ``run_leaderboard``)::

    ROWS["LAMIA-h8"] = RowSpec("LAMIA", {"palette_size": 8}, "LAMIA with 8 aspects")

A name on the command line that is not in the table is taken as a plain RecBole model name.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RowSpec:
    """One leaderboard row: ``model`` (as ``get_model`` knows it) trained with ``overrides`` on top of the
    shared configuration."""

    model: str
    overrides: dict = field(default_factory=dict)
    description: str = ""


# FDSA reads item features; "auto" picks the categorical item text fields (brand, categories on
# amazon-beauty; release_year, class on ml-100k), see ``child.resolve_auto_features``.
ROWS = {
    "LAMIA": RowSpec("LAMIA", {}, "item palette + per-aspect k-means, parallel generative recommender"),
    "TIGER": RowSpec("TIGER", {}, "sentence embedding + RQ-VAE, T5 with trie-constrained beam search"),
    "SASRec": RowSpec("SASRec", {"loss_type": "CE"}, "RecBole SASRec, cross-entropy over all items"),
    "BERT4Rec": RowSpec("BERT4Rec", {"loss_type": "CE"},
                        "RecBole BERT4Rec (its CE computed on the masked positions only: same loss, less work)"),
    "GRU4Rec": RowSpec("GRU4Rec", {"loss_type": "CE"}, "RecBole GRU4Rec"),
    "FDSA": RowSpec("FDSA", {"loss_type": "CE", "selected_features": "auto"},
                    "RecBole FDSA, feature-aware (categorical item fields)"),
    "TextKNN": RowSpec("TextKNN", {}, "content baseline: items nearest by text to the last history item, untrained"),
    # Each ablation changes one thing against the dataset's LAMIA setting. Where that is not the palette (ml-100k:
    # one sentence embedding + PQ, properties/ml-100k/LAMIA.yaml), add --set item_embedding=palette --set
    # quantizer=kmeans: a shared --set sits below a row's own overrides, and without it the palette rows' options
    # are ignored (the dataset logs a warning naming them).
    "LAMIA-no-recon": RowSpec("LAMIA", {"use_text_reconstruction": False}, "ablation: no text reconstruction"),
    "LAMIA-no-contrastive": RowSpec("LAMIA", {"use_contrastive": False}, "ablation: no contrastive term"),
    # RQ-VAE with TIGER's settings (3 levels x 256 codes + a collision token), also where a dataset file
    # tunes LAMIA's k-means codebook_size: 2048 codes per residual level is not the RQ-VAE being ablated.
    "LAMIA-rqvae": RowSpec("LAMIA", {"quantizer": "rqvae", "collision_handling": "extra_token", "codebook_size": 256},
                           "ablation: palette + RQ-VAE (TIGER's 3 x 256 codes) instead of k-means"),
    "LAMIA-sentence": RowSpec("LAMIA", {"item_embedding": "sentence"},
                              "ablation: one sentence embedding + k-means"),
    # The like-for-like test of the palette: one embedding cut into as many tokens as the palette has aspects.
    "LAMIA-sentence-pq": RowSpec("LAMIA", {"item_embedding": "sentence", "quantizer": "pq", "pq_subspaces": 16},
                                 "ablation: one sentence embedding, PQ into 16 tokens (the palette's ID shape)"),
}

DEFAULT_ROWS = list(ROWS)


def resolve_rows(names, extra_rows=None):
    """``[(name, RowSpec)]`` for ``names``; unknown names become ``RowSpec(name)`` (a RecBole model name)."""
    table = dict(ROWS)
    table.update(extra_rows or {})
    resolved = []
    for name in names:
        spec = table.get(name)
        if spec is None:
            spec = RowSpec(name, {}, "RecBole model")
        elif isinstance(spec, dict):  # plain dicts are accepted in extra_rows
            spec = RowSpec(spec["model"], dict(spec.get("overrides", {})), spec.get("description", ""))
        resolved.append((name, spec))
    return resolved
