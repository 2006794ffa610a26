"""Cold-start split: a seeded share of items never occurs in training; metrics on the test cases that target them.

How the split is made (also in ``results/README.md``):

1. **Which items.** After RecBole's filtering and ID remapping (``create_dataset``), the eligible items are
   those with at least one interaction. They are sorted by their *raw* item token (so the choice does not
   depend on RecBole's internal index order), and ``n = round(cold_start_ratio * n_eligible)`` of them
   (at least 1 when the ratio is positive) are drawn without replacement by
   ``numpy.random.default_rng(cold_start_seed)``. ``cold_start_seed`` defaults to the run's ``seed``.
   The same dataset, ratio and seed give the same items for every model.
2. **Training split.** RecBole builds the usual leave-one-out split (each user's last interaction is the
   test target, the one before it the valid target, the earlier ones the training targets; one
   training sample per prefix). The training split is then rebuilt *as if the cold items' interactions
   had never happened in the training part of each user's sequence*:

   * every training sample whose **target** is a cold item is removed;
   * cold items are **deleted from the training histories** too, and each remaining sample's history is
     re-cut to the last ``MAX_ITEM_LIST_LENGTH`` items of the user's cold-free training sequence before
     its target. This is exactly RecBole's augmentation of the cold-free training sequence;
   * a sample whose cold-free history is empty (all earlier items of the user were cold) is dropped, as
     RecBole never makes a sample without history.

   Why delete cold items from histories instead of keeping them (or dropping those samples): keeping them
   lets an ID model learn the cold item's input embedding (tied to its output embedding in SASRec), and
   models that learn from every position of a sequence (LAMIA's ``train_all_positions``) would even use
   it as an intermediate *target*, so the item would not be cold. Dropping every sample whose history
   holds a cold item would throw away most of the later samples of the users who met one (histories
   reach 50 items back) and change the warm training data far more than the 5 % intended.
   The rebuild runs inside RecBole's ``SequentialDataset.build``, *before* a dataset subclass post-processes
   the training split (LAMIA's ``keep_sequence_ends``), so that post-processing sees cold-free sequences.
3. **Valid and test splits are untouched**: cold items stay in their histories and as their targets.
4. **Cold metrics.** Recall@10 and NDCG@10 over the test cases whose target is a cold item (full ranking
   over all items, as for the main metrics), from the same best-validation checkpoint as the test row.

Any run can use it, not only the leaderboard: ``cold_start_ratio`` (and ``cold_start_seed``) in the config of
``run_recbole_lamia.py`` / ``recbole_lamia.quick_start.run`` train on the cold-start split and add
``cold_test_result`` (and ``cold_test_cases``) to the result; in your own script, build the loaders inside
``cold_start_build(select_cold_items(...))`` and evaluate ``cold_test_loader(...)`` with any RecBole trainer.

Item content is not interaction data: the semantic-ID tokenizers (LAMIA's palette, TIGER's RQ-VAE) and
FDSA's item features still see every item, which is the point of a cold-start comparison. Negative
sampling is off (cross-entropy over all items), so a cold item's ID embedding only ever gets gradients
as a softmax negative.
"""

import contextlib

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.utils import get_dataloader

# Config keys of the cold-start split, with their defaults (no split; the run's seed).
COLD_START_DEFAULTS = {"cold_start_ratio": 0.0, "cold_start_seed": None}


def cold_start_settings(config):
    """``(ratio, seed)`` of the cold-start split a config asks for; a bad ratio is one ``UserInputError`` line."""
    from recbole_lamia.utils.errors import UserInputError

    ratio, seed = config["cold_start_ratio"], config["cold_start_seed"]
    ratio = COLD_START_DEFAULTS["cold_start_ratio"] if ratio is None else ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise UserInputError(f"cold_start_ratio must be a number in [0, 1), got {ratio!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UserInputError(f"cold_start_seed must be an integer, got {seed!r}.")
    return float(ratio), config["seed"] if seed is None else seed


def eligible_items(dataset):
    """Internal ids of the items with at least one interaction (dataset before ``build``)."""
    feat = dataset.inter_feat
    values = feat[dataset.iid_field]
    values = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    items = np.unique(values.astype(np.int64))
    list_field = dataset.iid_field + dataset.config["LIST_SUFFIX"]
    if hasattr(feat, "interaction") and list_field in feat:  # already augmented: first items are in histories
        items = np.union1d(items, np.unique(feat[list_field].numpy()))
    return items[items > 0]


def select_cold_items(dataset, ratio, seed):
    """Sorted internal ids of the cold items: a seeded draw of ``ratio`` of the eligible items, by raw token."""
    if not ratio or ratio <= 0:
        return np.zeros(0, dtype=np.int64)
    if ratio >= 1:
        raise ValueError(f"cold_start_ratio must be in [0, 1), got {ratio}")
    items = eligible_items(dataset)
    tokens = np.asarray(dataset.id2token(dataset.iid_field, items)).astype(str)
    items = items[np.argsort(tokens, kind="stable")]
    n = max(1, round(ratio * len(items)))
    rng = np.random.default_rng(int(seed))
    return np.sort(items[rng.choice(len(items), size=n, replace=False)])


def cold_set_hash(dataset, cold_items):
    """Short hash of the cold items' raw tokens, to check that rows share one cold split."""
    import hashlib

    tokens = sorted(str(t) for t in dataset.id2token(dataset.iid_field, np.asarray(cold_items, dtype=np.int64)))
    return hashlib.sha256("\n".join(tokens).encode()).hexdigest()[:10]


def remove_cold_items_from_train(train_dataset, cold_items):
    """Rebuild RecBole's augmented training split without the cold items (see the module docstring).

    ``train_dataset`` is the training part of ``SequentialDataset.build()``: one sample per prefix, the
    samples of a user contiguous and in time order. Modified in place and returned with statistics.
    """
    ds = train_dataset
    inter = ds.inter_feat
    cold = np.asarray(cold_items, dtype=np.int64)
    suffix = ds.config["LIST_SUFFIX"]
    iid, uid, len_field = ds.iid_field, ds.uid_field, ds.item_list_length_field
    n = len(inter)
    stats = {"train_samples_before": n, "train_samples_after": n, "removed_cold_target_samples": 0,
             "dropped_empty_history_samples": 0, "cold_history_occurrences_removed": 0}
    if n == 0 or len(cold) == 0:
        return ds, stats
    list_fields = [(f, f + suffix) for f in inter.columns if f + suffix in inter.columns]
    if iid + suffix not in inter.columns or len_field not in inter.columns:
        raise ValueError("the cold-start split needs RecBole's augmented sequential training samples")
    uids = inter[uid].numpy()
    starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
    if len(np.unique(uids)) != len(starts):
        raise ValueError("the training samples of a user are not contiguous; cannot rebuild the cold-start split")
    ends = np.r_[starts[1:], n]
    lengths = inter[len_field].numpy().astype(np.int64)
    hist = inter[iid + suffix].numpy()
    targets = inter[iid].numpy()
    max_len = hist.shape[1]
    positions = np.arange(max_len)
    # Successive samples of a user must be successive prefixes: each history ends with the previous target.
    same_user = np.flatnonzero(uids[1:] == uids[:-1])
    last_in_history = hist[same_user + 1, np.maximum(lengths[same_user + 1] - 1, 0)]
    if len(same_user) and not np.array_equal(last_in_history, targets[same_user]):
        raise ValueError("the training samples are not RecBole's per-prefix augmentation; "
                         "cannot rebuild the cold-start split")
    stats["cold_history_occurrences_removed"] = int(
        (np.isin(hist, cold) & (positions[None, :] < lengths[:, None])).sum())

    # The user's training sequence: the first sample's history, then every sample's target.
    first_len = lengths[starts]
    seg_len = first_len + (ends - starts)
    seg = np.repeat(np.arange(len(starts)), seg_len)
    offset = np.arange(len(seg)) - np.repeat(np.cumsum(seg_len) - seg_len, seg_len)
    in_history = offset < first_len[seg]
    src_row = np.where(in_history, starts[seg], starts[seg] + offset - first_len[seg])
    src_col = np.where(in_history, offset, -1)
    item = np.where(in_history, hist[src_row, np.maximum(src_col, 0)], targets[src_row])

    is_cold = np.isin(item, cold)
    stats["removed_cold_target_samples"] = int((is_cold & ~in_history).sum())
    kept = np.flatnonzero(~is_cold)
    kept_seg = seg[kept]
    seg_first = np.searchsorted(kept_seg, kept_seg, side="left")
    pos = np.arange(len(kept)) - seg_first  # position in the user's cold-free sequence
    is_target = ~in_history[kept]
    stats["dropped_empty_history_samples"] = int((is_target & (pos == 0)).sum())
    q = np.flatnonzero(is_target & (pos >= 1))  # indices into ``kept`` of the new samples' targets
    h = np.minimum(pos[q], max_len)
    window = q[:, None] - h[:, None] + positions[None, :]
    valid = positions[None, :] < h[:, None]
    entries = kept[np.where(valid, window, 0)]  # [m, max_len] indices into the sequence table

    new = inter[torch.from_numpy(src_row[kept[q]])]
    rows_t = torch.from_numpy(src_row[entries])
    cols = src_col[entries]
    from_hist = torch.from_numpy(cols >= 0)
    cols_t = torch.from_numpy(np.maximum(cols, 0))
    valid_t = torch.from_numpy(valid)
    for field, list_field in list_fields:
        seq_values = inter[list_field][rows_t, cols_t]
        own_values = inter[field][rows_t]
        mask = from_hist.view(from_hist.shape + (1,) * (seq_values.dim() - 2))
        values = torch.where(mask, seq_values, own_values.to(seq_values.dtype))
        values = values * valid_t.view(valid_t.shape + (1,) * (values.dim() - 2)).to(values.dtype)
        new[list_field] = values
    new[len_field] = torch.from_numpy(h).to(inter[len_field].dtype)
    ds.inter_feat = new
    stats["train_samples_after"] = len(new)
    return ds, stats


@contextlib.contextmanager
def cold_start_build(cold_items, stats=None):
    """Within the block, ``SequentialDataset.build`` returns a training split without ``cold_items``.

    Dataset subclasses call ``super().build()`` first, so their own post-processing of the training split
    (LAMIA's ``keep_sequence_ends``) runs on the cold-free split. ``stats`` (a dict) receives the figures.
    """
    original = SequentialDataset.build
    record = {} if stats is None else stats

    def build(self):
        datasets = original(self)
        datasets[0], figures = remove_cold_items_from_train(datasets[0], cold_items)
        record.update(figures)
        return datasets

    SequentialDataset.build = build
    try:
        yield record
    finally:
        SequentialDataset.build = original


def cold_test_loader(config, test_loader, cold_items):
    """``(loader, n_cases)``: a full-sort test loader over the test cases whose target is a cold item."""
    dataset = test_loader._dataset
    targets = dataset.inter_feat[dataset.iid_field].numpy()
    index = np.flatnonzero(np.isin(targets, np.asarray(cold_items, dtype=np.int64)))
    if len(index) == 0:
        return None, 0
    subset = dataset.copy(dataset.inter_feat[torch.from_numpy(index)])
    loader = get_dataloader(config, "test")(config, subset, test_loader._sampler, shuffle=False)
    return loader, len(index)
