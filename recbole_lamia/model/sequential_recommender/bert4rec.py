"""RecBole's BERT4Rec with its cross-entropy computed on the masked positions only.

RecBole 1.2.1 scores every slot of ``MASK_INDEX`` against the whole catalogue, padding included:
``int(mask_ratio * MAX_ITEM_LIST_LENGTH)`` slots per sequence (30 with mask 0.6 and 50 items), of which a
short history fills a few. On amazon-beauty the logits of one batch are 2048 x 30 x 12,101 floats (3 GB), and
most of them are multiplied by a zero weight afterwards. This class computes the logits of the real masked
positions only. The loss is the same mean over the same positions (``MASK_INDEX > 0``, RecBole's own rule),
the forward pass and its dropout draws are RecBole's, and there are no new weights, so checkpoints,
predictions and resumed runs are RecBole's BERT4Rec's (``tests/test_bert4rec.py`` checks loss and gradients
against RecBole's class; ``benchmarks/bert4rec_loss_cost.py`` measures the time).

Registered under RecBole's module path (``recbole_lamia/__init__.py``), so once the plugin is imported,
``get_model("BERT4Rec")`` and ``from recbole.model.sequential_recommender.bert4rec import BERT4Rec`` give this class;
RecBole's own stays reachable as ``RecBoleBERT4Rec`` here.
"""

import torch
from recbole.model.sequential_recommender.bert4rec import BERT4Rec as RecBoleBERT4Rec
from torch.nn import functional as F


class BERT4Rec(RecBoleBERT4Rec):
    """RecBole's BERT4Rec; ``loss_type: CE`` skips the padded mask slots (same loss, less work)."""

    def calculate_loss(self, interaction):
        """RecBole's loss; for CE, only the positions of ``MASK_INDEX`` that hold a masked item are scored."""
        if self.loss_type != "CE":
            return super().calculate_loss(interaction)
        masked_index = interaction[self.MASK_INDEX]  # [B mask_len], 0 = empty slot
        seq_output = self.forward(interaction[self.MASK_ITEM_SEQ])  # [B max_len H]
        real = masked_index > 0
        rows = torch.arange(masked_index.size(0), device=masked_index.device).unsqueeze(1).expand_as(masked_index)
        hidden = seq_output[rows[real], masked_index[real]]  # [masked positions H]
        logits = hidden @ self.item_embedding.weight[: self.n_items].t() + self.output_bias
        return F.cross_entropy(logits, interaction[self.POS_ITEMS][real])
