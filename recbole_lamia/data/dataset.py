"""Sequential datasets whose preprocessing step turns item text into semantic IDs."""

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

from recbole_lamia.tokenizer.item_tokenizer import ItemTokenizer, tokenizer_params
from recbole_lamia.utils.config_check import warn_ignored_tokenizer_keys, warn_unknown_plugin_keys
from recbole_lamia.utils.distributed import rank_zero_first


class SemanticIDDataset(SequentialDataset):
    """A ``SequentialDataset`` that runs the item tokenizer after RecBole's own preprocessing.

    Attributes:
        item_semantic_ids (torch.LongTensor): ``[item_num, L]`` codes per item index; row 0, RecBole's
            padding item, is all -1.
        semantic_id_report (dict): timings, tuning history, code usage and collision figures.
    """

    def __init__(self, config):
        warn_unknown_plugin_keys(config)
        # Validate before the (slow) data loading so that bad settings fail fast.
        self.tokenizer_params = tokenizer_params(config)
        warn_ignored_tokenizer_keys(config, self.tokenizer_params)
        super().__init__(config)
        tokenizer = ItemTokenizer(self.tokenizer_params)
        with rank_zero_first():  # several processes: rank 0 tokenizes, the others read its cache
            self.item_semantic_ids = torch.from_numpy(tokenizer.tokenize(self)).long()
            if float(config["content_score_weight"] or 0.0) > 0:  # LAMIA's content term reads sentence embeddings
                sentence = ItemTokenizer(dict(self.tokenizer_params, item_embedding="sentence"))
                self.item_text_embeddings = torch.from_numpy(np.asarray(sentence.embed(self), dtype=np.float32))
        self.semantic_id_report = tokenizer.report

    def build(self):
        """RecBole's split; with ``train_all_positions`` the train split keeps only sequence ends."""
        datasets = super().build()
        if self.config["train_all_positions"]:
            datasets[0] = keep_sequence_ends(datasets[0], self.max_item_list_len)
        return datasets


class TextEmbeddingDataset(SequentialDataset):
    """A ``SequentialDataset`` that embeds each item's text after RecBole's own preprocessing (no quantizer).

    Attributes:
        item_text_embeddings (torch.FloatTensor): ``[item_num, h, dim]`` (``item_embedding: sentence``: h = 1);
            row 0, RecBole's padding item, is what the embedder gives an empty text.
    """

    def __init__(self, config):
        warn_unknown_plugin_keys(config)
        self.tokenizer_params = tokenizer_params(config)
        warn_ignored_tokenizer_keys(config, self.tokenizer_params, with_quantizer=False)
        super().__init__(config)
        tokenizer = ItemTokenizer(self.tokenizer_params)
        with rank_zero_first():
            self.item_text_embeddings = torch.from_numpy(np.asarray(tokenizer.embed(self), dtype=np.float32))
        self.text_embedding_report = tokenizer.report


class TextKNNDataset(TextEmbeddingDataset):
    """Dataset for the TextKNN content baseline (see ``properties/TextKNN.yaml``)."""


class LAMIADataset(SemanticIDDataset):
    """Dataset for LAMIA: item palette + per-aspect k-means by default (see ``properties/LAMIA.yaml``)."""


def keep_sequence_ends(train_dataset, max_len):
    """Keep only the training samples whose histories jointly cover every target once.

    RecBole's augmentation makes one sample per prefix of a user's sequence. A model that predicts at
    every position (``train_all_positions``) learns the same targets from the longest prefix alone, and
    from every ``max_len``-th prefix before it when histories are truncated.
    """
    users = train_dataset.inter_feat[train_dataset.uid_field].numpy()
    n = len(users)
    if n == 0:
        return train_dataset
    is_last = np.ones(n, dtype=bool)
    is_last[:-1] = users[:-1] != users[1:]
    # r = number of samples after this one of the same user (0 for the user's last sample)
    group_end = np.flatnonzero(is_last)
    end_of_sample = group_end[np.searchsorted(group_end, np.arange(n))]
    keep = (end_of_sample - np.arange(n)) % max_len == 0
    train_dataset.inter_feat = train_dataset.inter_feat[torch.from_numpy(np.flatnonzero(keep))]
    return train_dataset


class TIGERDataset(SemanticIDDataset):
    """Dataset for TIGER: sentence embedding + RQ-VAE + a disambiguation token (see ``properties/TIGER.yaml``)."""
