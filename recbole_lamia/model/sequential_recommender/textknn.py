"""TextKNN: a content baseline that recommends the items whose text is closest to the last items of the history."""

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn
from torch.nn import functional as F

from recbole_lamia.utils.errors import UserInputError


class TextKNN(SequentialRecommender):
    """Scores every item by the cosine similarity of its text embedding to the history's last items.

    * Item vectors: the item's text embedding (``item_embedding: sentence``: one mean-pooled sentence embedding;
      ``palette``: the h aspect vectors concatenated), L2-normalised. Nothing is learned.
    * Query: the mean of the last ``textknn_history_items`` history items' vectors (1: the last item alone).
    * Items in the history are never recommended again (their score is -inf): the baseline looks for new
      items that read like the last ones, which is what a cold item can offer.

    It is the content reference of the cold-start comparison (issue 16): every item, cold or warm, is scored
    from its text alone. It trains nothing; its trainer (``TextKNNTrainer``) runs one pass of a zero loss and
    then evaluates.
    """

    input_type = InputType.POINTWISE

    @classmethod
    def check_config(cls, config):
        """Raise ``UserInputError`` for settings TextKNN cannot run with, before any data is read."""
        window = config["textknn_history_items"]
        if not isinstance(window, int) or window < 1:
            raise UserInputError(f"textknn_history_items must be an integer >= 1, got {window!r}.")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        embeddings = getattr(dataset, "item_text_embeddings", None)
        if embeddings is None:
            raise UserInputError(f"TextKNN needs a dataset with item_text_embeddings (built by TextKNNDataset); "
                                 f"got {type(dataset).__name__}.")
        vectors = F.normalize(embeddings.flatten(1).float(), dim=-1)
        vectors[0] = 0.0  # padding
        self.register_buffer("item_vectors", vectors, persistent=False)
        self.history_items = int(config["textknn_history_items"])
        # RecBole's Trainer needs one parameter to build its optimizer; it is never used in a score.
        self.unused = nn.Parameter(torch.zeros(1))

    def calculate_loss(self, interaction):
        return self.unused.sum() * 0.0

    def query(self, item_seq, item_seq_len):
        """``[B, dim]``: the mean vector of each history's last ``history_items`` items."""
        positions = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0)
        end = item_seq_len.unsqueeze(1)
        recent = (positions < end) & (positions >= end - self.history_items)
        vectors = self.item_vectors[item_seq] * recent.unsqueeze(-1)
        return F.normalize(vectors.sum(1), dim=-1)

    def full_sort_predict(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        scores = self.query(item_seq, item_seq_len) @ self.item_vectors.t()
        scores.scatter_(1, item_seq, float("-inf"))  # the history
        scores[:, 0] = float("-inf")  # padding
        return scores

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
