"""Use a trained model: load it safely, recommend for users, export the semantic IDs, report the aspects.

RecBole's counterparts are ``recbole.quick_start.load_data_and_model`` and ``recbole.utils.case_study``
(``full_sort_topk``). The command line is ``run_recbole_lamia.py recommend | export | aspects``.

    from recbole_lamia.case_study import load_data_and_model, recommend
    config, model, dataset, *_ = load_data_and_model("saved/LAMIA-Dec-02-2026_10-00-00.pth")
    for row in recommend(model, dataset, ["A1YJEY40YUW4SE"], k=10):
        print(row["user_id"], row["rank"], row["item_id"], row["score"], row["text"])
"""

import collections
import math
import os
import re

import numpy as np
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, init_logger, init_seed

from recbole_lamia.data.item_text import ItemTextBuilder
from recbole_lamia.quantizer.base import normalized_mutual_information
from recbole_lamia.utils.checkpoint import (
    CheckpointError,
    check_semantic_ids,
    config_from_checkpoint,
    load_checkpoint,
)
from recbole_lamia.utils.errors import UserInputError, first_line


def load_data_and_model(model_file, model=None, dataset=None, config_overrides=None):
    """RecBole's ``load_data_and_model`` for the plugin's safe checkpoints.

    Reads ``model_file`` with ``weights_only=True`` (``utils/checkpoint.py``), rebuilds the dataset with the
    settings it was trained with, and refuses, with a ``CheckpointError``: a missing, corrupt or unsafe file;
    a checkpoint of another ``model`` or ``dataset`` than the ones named (when named); weights that do not fit
    the model; and semantic IDs other than the ones the weights were trained with.

    Returns ``(config, model, dataset, train_data, valid_data, test_data)``, the model in eval mode.
    """
    state = load_checkpoint(model_file)
    saved_model, saved_dataset = state["config"]["model"], state["config"]["dataset"]
    wanted = (model or saved_model, dataset or saved_dataset)
    if wanted != (saved_model, saved_dataset):
        raise CheckpointError(f"{model_file} holds {saved_model} trained on {saved_dataset}, "
                              f"not {wanted[0]} on {wanted[1]}.")
    config = config_from_checkpoint(state, config_overrides, checkpoint_path=model_file)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    data = create_dataset(config)
    # Sequential datasets replace inter_feat by the augmented training samples when split: keep the histories.
    data.interaction_histories = user_histories(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"], config["reproducibility"])
    recommender = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    check_semantic_ids(state, recommender, model_file)
    try:
        recommender.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{model_file} does not fit {saved_model} as configured now "
                              f"({first_line(err)})") from None
    recommender.load_other_parameter(state.get("other_parameter"))
    return config, recommender.eval(), data, train_data, valid_data, test_data


def text_settings(dataset):
    """``(fields, separator, ignore_values)`` as the tokenizer used them: its own settings for a LAMIA or TIGER
    dataset (the text-like fields when ``item_text_fields`` is unset), the config's otherwise."""
    from recbole_lamia.tokenizer.item_tokenizer import TOKENIZER_DEFAULTS, field_list, text_like_fields

    params = getattr(dataset, "tokenizer_params", None) or dataset.config.final_config_dict
    fields = field_list(params.get("item_text_fields")) or text_like_fields(dataset)
    separator = params.get("item_text_separator")
    ignore = params.get("item_text_ignore_values")
    return (fields, TOKENIZER_DEFAULTS["item_text_separator"] if separator is None else separator,
            TOKENIZER_DEFAULTS["item_text_ignore_values"] if ignore is None else ignore)


def item_texts(dataset):
    """Each item index's text, built as the tokenizer builds it (``""`` for a dataset without item text)."""
    fields, separator, ignore = text_settings(dataset)
    if not fields:
        return [""] * dataset.item_num
    return ItemTextBuilder(fields, separator, ignore).build(dataset)[0]


def user_histories(dataset):
    """``{user index: [item index, ...]}`` in time order, over every interaction the dataset holds (train,
    validation and test). Read before the dataset is split (``load_data_and_model`` keeps the result as
    ``dataset.interaction_histories``): splitting a sequential dataset replaces its interactions by samples."""
    histories = getattr(dataset, "interaction_histories", None)
    if histories is not None:
        return histories
    feat = dataset.inter_feat
    if dataset.iid_field + dataset.config["LIST_SUFFIX"] in feat.columns:
        raise UserInputError("this dataset was already split into training samples; read its histories before "
                             "data_preparation (recbole_lamia.case_study.load_data_and_model does).")
    users, items = np.asarray(feat[dataset.uid_field]), np.asarray(feat[dataset.iid_field])
    keys = [users]
    if dataset.time_field and dataset.time_field in feat.columns:
        keys.insert(0, np.asarray(feat[dataset.time_field]))
    order = np.lexsort(keys)  # by user, then time (a stable sort keeps the file order otherwise)
    histories = collections.defaultdict(list)
    for user, item in zip(users[order], items[order]):
        histories[int(user)].append(int(item))
    return histories


def user_indices(dataset, user_ids):
    """Internal indices of raw ``user_ids``; a ``UserInputError`` names the ones the dataset does not have."""
    token_to_id = dataset.field2token_id[dataset.uid_field]
    unknown = [u for u in user_ids if str(u) not in token_to_id]
    if unknown:
        shown = ", ".join(repr(str(u)) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        example = next(iter(k for k in token_to_id if k != "[PAD]"), "")
        raise UserInputError(f"unknown user id {shown} in dataset {dataset.dataset_name} "
                             f"({dataset.user_num - 1} users; raw ids look like {example!r}).")
    return [token_to_id[str(u)] for u in user_ids]


def check_k(k, n_items):
    """``k`` as an int in [1, n_items], or a ``UserInputError``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UserInputError(f"k must be a positive integer, got {k!r}.")
    if k > n_items:
        raise UserInputError(f"k ({k}) is larger than the number of items that can be recommended ({n_items}).")
    return int(k)


def history_batch(model, dataset, histories, users):
    """A RecBole ``Interaction`` holding each user's last ``MAX_ITEM_LIST_LENGTH`` items, as the test loader
    would (right-padded item list and its length)."""
    width = int(dataset.config["MAX_ITEM_LIST_LENGTH"])
    seq = torch.zeros(len(users), width, dtype=torch.long)
    lengths = torch.zeros(len(users), dtype=torch.long)
    for row, user in enumerate(users):
        recent = histories.get(user, [])[-width:]
        seq[row, : len(recent)] = torch.tensor(recent, dtype=torch.long)
        lengths[row] = len(recent)
    fields = {model.USER_ID: torch.tensor(users, dtype=torch.long), model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths}
    return Interaction(fields)


@torch.no_grad()
def recommend(model, dataset, user_ids, k=10, exclude_seen=True, batch_size=256):
    """Top-``k`` next items for each raw user id, after the user's whole known history.

    Scores every item with the model's ``full_sort_predict`` (any RecBole sequential model). Items the user has
    already interacted with are left out unless ``exclude_seen`` is False. Returns one dict per recommendation:
    ``user_id``, ``rank`` (1-based), ``item_id`` (raw), ``score`` (the model's; LAMIA's is a log-probability),
    ``text``.
    """
    if not hasattr(model, "ITEM_SEQ"):  # RecBole's SequentialRecommender sets it; general models score users
        raise UserInputError(f"recommend needs a sequential model (it reads each user's history); the checkpoint "
                             f"holds {type(model).__name__}, a {model.type.name.lower()} model.")
    k = check_k(k, dataset.item_num - 1)  # index 0 is RecBole's padding item
    users = user_indices(dataset, list(user_ids))
    histories = user_histories(dataset)
    texts = item_texts(dataset)
    item_tokens = dataset.field2id_token[dataset.iid_field]
    user_tokens = dataset.field2id_token[dataset.uid_field]
    model.eval()
    rows = []
    for start in range(0, len(users), batch_size):
        chunk = users[start: start + batch_size]
        batch = history_batch(model, dataset, histories, chunk).to(model.device)
        scores = model.full_sort_predict(batch).view(len(chunk), -1).float().cpu()
        scores[:, 0] = -math.inf
        if exclude_seen:
            for row, user in enumerate(chunk):
                scores[row, histories.get(user, [])] = -math.inf
        available = torch.isfinite(scores).sum(1)
        top_scores, top_items = scores.topk(k, dim=1)
        for row, user in enumerate(chunk):
            for rank in range(min(k, int(available[row]))):
                item = int(top_items[row, rank])
                rows.append({"user_id": str(user_tokens[user]), "rank": rank + 1, "item_id": str(item_tokens[item]),
                             "score": float(top_scores[row, rank]), "text": texts[item]})
    return rows


def format_recommendations(rows):
    """``recommend``'s rows as a plain-text table, one block per user."""
    lines, user = [], None
    for row in rows:
        if row["user_id"] != user:
            user = row["user_id"]
            lines += ([""] if lines else []) + [f"user {user}", f"{'rank':>4}  {'item_id':<14} {'score':>9}  text"]
        lines.append(f"{row['rank']:>4}  {row['item_id']:<14} {row['score']:>9.4f}  {_cell(row['text'], 90)}")
    return "\n".join(lines)


def write_rows(rows, path):
    """Write ``recommend``'s rows to a CSV file."""
    import pandas as pd

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "text"]).to_csv(path, index=False)


def semantic_id_columns(dataset):
    """Column names of the semantic-ID levels: ``aspect_1..aspect_h`` for a palette (``aspect_1_coarse_1`` ... for
    the coarse levels of ``multiscale_kmeans``), ``level_1..level_L`` otherwise."""
    codes = getattr(dataset, "item_semantic_ids", None)
    if codes is None:
        raise UserInputError(f"{type(dataset).__name__} has no semantic IDs: export and aspects need a LAMIA or "
                             "TIGER checkpoint.")
    n_levels = codes.shape[1]
    params = getattr(dataset, "tokenizer_params", {})
    h = int(params.get("palette_size") or 0) if params.get("item_embedding") == "palette" else 0
    if h and n_levels % h == 0:
        return [f"aspect_{a + 1}" + (f"_coarse_{s}" if s else "") for s in range(n_levels // h) for a in range(h)]
    return [f"level_{j + 1}" for j in range(n_levels)]


def semantic_id_table(dataset):
    """A pandas DataFrame: raw ``item_id``, one column per semantic-ID level, and the item ``text``."""
    import pandas as pd

    columns = semantic_id_columns(dataset)
    codes = dataset.item_semantic_ids[1:].numpy()
    table = pd.DataFrame(codes, columns=columns)
    table.insert(0, "item_id", [str(t) for t in dataset.field2id_token[dataset.iid_field][1:]])
    table["text"] = item_texts(dataset)[1:]
    return table


def export_semantic_ids(dataset, path):
    """Write ``semantic_id_table`` to ``path``: Parquet for ``.parquet`` (needs pyarrow), CSV otherwise.
    Returns the number of items written."""
    table = semantic_id_table(dataset)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".parquet"):
        try:
            table.to_parquet(path, index=False)
        except ImportError:
            raise UserInputError("writing Parquet needs pyarrow (pip install pyarrow); or give a .csv path.") from None
    else:
        table.to_csv(path, index=False)
    return len(table)


_WORD = re.compile(r"[a-z][a-z0-9'-]{2,}")
_STOPWORDS = frozenset("the and for with from this that are was oz fl ounce ounces pack new set inch count of to in by "
                       "on or an".split())


def _words(text):
    return {w.strip("'-") for w in _WORD.findall(text.lower())} - _STOPWORDS


def distinctive_words(code_texts, document_frequency, n_items, top=5, min_count=2):
    """The words most over-represented in ``code_texts`` against all items: ranked by lift (share in the code /
    share overall), damped for rare words, among words in at least ``min_count`` of the code's items."""
    counts = collections.Counter(w for text in code_texts for w in _words(text))
    n = len(code_texts)
    scored = []
    for word, count in counts.items():
        if count < min(min_count, n):
            continue
        lift = (count / n) / (document_frequency[word] / n_items)
        scored.append((lift * count / (count + 1), count, word))
    return [word for _, _, word in sorted(scored, reverse=True)[:top]]


def field_labels(dataset, field, ignore_values):
    """One label per item index (from 1) of an item field: a token, the last (most specific) element of a
    category list, or the value as text."""
    from recbole.utils import FeatureType

    values = ItemTextBuilder([field], ignore_values=ignore_values).field_values(dataset)[field][1:]
    if dataset.field2type[field] == FeatureType.TOKEN_SEQ:  # a category path: its most specific category
        return [v.split(", ")[-1] for v in values]
    return values


def aspect_report(dataset, out_dir, top_codes=5, examples=3, words=6, title=None):
    """The paper's case study, automatic: what each palette aspect (semantic-ID level) groups together.

    Writes ``aspects.md`` (how strongly each aspect's codes follow each item field, as NMI above chance; then per
    aspect its biggest codes with their sizes, the words that set them apart and example item texts) and
    ``aspects.png`` (the aspect-by-field heatmap). Returns the paths written.
    """
    columns = semantic_id_columns(dataset)
    codes = dataset.item_semantic_ids[1:].numpy()
    fine = [j for j, name in enumerate(columns) if "_coarse_" not in name]
    texts = item_texts(dataset)[1:]
    interactions = [item for history in user_histories(dataset).values() for item in history]
    popularity = np.bincount(interactions, minlength=dataset.item_num)[1:]
    document_frequency = collections.Counter(w for text in texts for w in _words(text))
    all_fields, _, ignore = text_settings(dataset)
    labels = {f: field_labels(dataset, f, ignore) for f in all_fields}
    # A field with nearly one value per item (a title) shares much information with any fine partition.
    fields = [f for f in all_fields if len(set(labels[f])) <= len(texts) // 2]
    skipped = [f for f in all_fields if f not in fields]
    nmi = np.array([[nmi_above_chance(codes[:, j], _label_ids(labels[f])) for f in fields]
                    for j in fine]) if fields else np.zeros((len(fine), 0))

    os.makedirs(out_dir, exist_ok=True)
    lines = [f"# {title or 'Aspect report'}", "",
             f"{len(texts)} items; semantic IDs of {codes.shape[1]} levels, {len(fine)} of them reported here "
             "(fine levels; coarse levels repeat them at a lower resolution).", ""]
    if fields:
        lines += ["## What each aspect follows", "",
                  "Normalised mutual information between the aspect's codes and each item field, above chance (the "
                  "NMI of the same codes shuffled across items; 0: no more than chance, 1: the codes are that "
                  "field). The categories column reads the most specific category."
                  + (f" Not shown: {', '.join(skipped)} (nearly one value per item)." if skipped else ""), "",
                  "| aspect | " + " | ".join(fields) + " | codes used |", "|---|" + "---:|" * (len(fields) + 1)]
        for row, j in enumerate(fine):
            lines.append(f"| {columns[j]} | " + " | ".join(f"{v:.2f}" for v in nmi[row])
                         + f" | {len(np.unique(codes[:, j]))} |")
        lines += ["", "![aspects by field](aspects.png)", ""]
    for j in fine:
        lines += [f"## {columns[j]}", "",
                  "| code | items | words that set it apart | example items (most interacted) |", "|---:|---:|---|---|"]
        sizes = collections.Counter(codes[:, j].tolist())
        for code, size in sizes.most_common(top_codes):
            members = np.flatnonzero(codes[:, j] == code)
            apart = distinctive_words([texts[i] for i in members], document_frequency, len(texts), top=words)
            shown = members[np.argsort(-popularity[members], kind="stable")[:examples]]
            example_text = "; ".join(_cell(texts[i], 70) for i in shown)
            lines.append(f"| {code} | {size} | {', '.join(apart)} | {example_text} |")
        lines.append("")
    markdown = os.path.join(out_dir, "aspects.md")
    with open(markdown, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    written = [markdown]
    if fields:
        written.append(_nmi_heatmap(nmi, [columns[j] for j in fine], fields, os.path.join(out_dir, "aspects.png")))
    return written


def nmi_above_chance(codes, labels, seed=0):
    """NMI of ``codes`` with ``labels`` minus that of the same codes shuffled across items: with thousands of
    codes, even unrelated partitions share information by chance (finite-sample bias)."""
    shuffled = np.random.default_rng(seed).permutation(codes)
    return normalized_mutual_information(codes, labels) - normalized_mutual_information(shuffled, labels)


def _label_ids(labels):
    index = {}
    return np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)


def _cell(text, limit):
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nmi_heatmap(nmi, aspects, fields, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(fields), 0.8 + 0.32 * len(aspects)))
    image = ax.imshow(nmi, cmap="viridis", vmin=0, vmax=max(0.01, float(nmi.max())), aspect="auto")
    ax.set_xticks(range(len(fields)), fields)
    ax.set_yticks(range(len(aspects)), aspects)
    for (row, col), value in np.ndenumerate(nmi):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", color="white" if value < nmi.max() / 2 else "k",
                fontsize=8)
    ax.set_title("NMI above chance: aspects and item fields")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
