"""LAMIA's generative recommender over parallel semantic IDs."""

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder
from recbole.utils import InputType
from torch import nn
from torch.nn import functional as F

from recbole_lamia.model.layers.trie import PrefixTrie, constrained_beam_search
from recbole_lamia.utils.errors import UserInputError


def require_semantic_ids(model, dataset):
    """``dataset.item_semantic_ids``, or a ValueError naming the dataset class ``model`` needs."""
    codes = getattr(dataset, "item_semantic_ids", None)
    if codes is None:
        name = type(model).__name__
        raise UserInputError(f"{name} needs a dataset with item_semantic_ids (built by {name}Dataset); "
                         f"got {type(dataset).__name__}.")
    return codes


def max_topk(config):
    """The largest k among the evaluation ``topk`` values."""
    topk = config["topk"]
    return max(topk) if isinstance(topk, (list, tuple)) else int(topk)


def distinct_rows(rows):
    """``(distinct, inverse)``: the distinct rows of a 2-D tensor and, per row, its index in ``distinct``."""
    # RecBole's sampled evaluation puts a history's copies next to each other: merging neighbours first is
    # cheap, and leaves torch.unique (a sort, 11 ms per 4040-row batch on one CPU thread) few rows to sort.
    runs, run_of_row = torch.unique_consecutive(rows, dim=0, return_inverse=True)
    distinct, distinct_of_run = torch.unique(runs, dim=0, return_inverse=True)
    return distinct, distinct_of_run[run_of_row]


def training_target_counts(dataset, seq_field, len_field, all_positions, n_items):
    """``[n_items]`` how often each item is a training target: the ``ITEM_ID`` of every sample and, when the
    model learns from every position (``train_all_positions``), each history item after the first."""
    feat = dataset.inter_feat
    counts = torch.bincount(feat[dataset.iid_field].long(), minlength=n_items)
    if all_positions and len(feat):
        seq, lengths = feat[seq_field].long(), feat[len_field].long()
        positions = torch.arange(seq.size(1)).unsqueeze(0)
        inner = (positions >= 1) & (positions < lengths.unsqueeze(1))
        counts = counts + torch.bincount(seq[inner], minlength=n_items)
    return counts[:n_items]


def check_unseen_item_count(count):
    """``count`` as a float, or ``UserInputError`` unless it is a number > 0."""
    if isinstance(count, bool) or not isinstance(count, (int, float)) or count <= 0:
        raise UserInputError(f"unseen_item_count must be a number > 0, got {count!r}.")
    return float(count)


class LAMIA(SequentialRecommender):
    """Reads a user's history as semantic tokens and generates the next item's h tokens.

    * Each history item is the sum of its h token embeddings (no per-item ID embedding unless
      ``use_item_id_embedding``), so an item never seen in training still has a representation.
    * A causal transformer (RecBole's ``TransformerEncoder``) encodes the history.
    * The next item's tokens are generated in parallel, one softmax per aspect (LAMIA's aspects are
      parallel, not coarse-to-fine); the output layer is tied to the token embeddings.
    * An item's score is the sum of its tokens' log-probabilities, so ``full_sort_predict`` scores every
      item exactly. ``beam_search: True`` instead keeps only a trie-constrained beam of real items.
    """

    input_type = InputType.POINTWISE
    # Options added after leaderboard rows were made, with the value that reproduces LAMIA from before they
    # existed. The leaderboard's configuration fingerprint leaves them out at that value, so such rows stay
    # valid. Add a new option here when it is introduced (adding an existing one changes the hash of every
    # row that has it at that value).
    NEUTRAL_OPTIONS = {"use_item_id_embedding": False, "aspect_dropout_prob": 0.0, "item_label_smoothing": 0.0,
                       "content_score_weight": 0.0, "item_loss_negatives": "all", "popularity_prior_weight": 0.0,
                       "unseen_item_count": 1.0}

    @classmethod
    def check_config(cls, config):
        """Raise ``UserInputError`` for settings LAMIA cannot run with; cheap, so it runs before any data is read."""
        item_loss_weight = float(config["item_loss_weight"] or 0.0)
        if item_loss_weight < 0:
            raise UserInputError(f"item_loss_weight must be >= 0, got {item_loss_weight}.")
        smoothing = float(config["item_label_smoothing"] or 0.0)
        if not 0 <= smoothing < 1:
            raise UserInputError(f"item_label_smoothing must be in [0, 1), got {smoothing}.")
        if smoothing > 0 and item_loss_weight == 0:
            raise UserInputError("item_label_smoothing smooths the whole-item loss, which item_loss_weight: 0 "
                                 "turns off.")
        dropout = float(config["aspect_dropout_prob"] or 0.0)
        if not 0 <= dropout < 1:
            raise UserInputError(f"aspect_dropout_prob must be in [0, 1), got {dropout}.")
        content = config["content_score_weight"] or 0.0
        if isinstance(content, bool) or not isinstance(content, (int, float)) or content < 0:
            raise UserInputError(f"content_score_weight must be a number >= 0, got {content!r}.")
        if content > 0 and config["beam_search"]:
            raise UserInputError("content_score_weight scores every item by text similarity, which the beam search "
                                 "does not; set beam_search: False or content_score_weight: 0.")
        negatives = config["item_loss_negatives"] or "all"
        if negatives not in ("all", "trained"):
            raise UserInputError(f"item_loss_negatives must be 'all' or 'trained', got {negatives!r}.")
        prior = config["popularity_prior_weight"] or 0.0
        if isinstance(prior, bool) or not isinstance(prior, (int, float)) or prior < 0:
            raise UserInputError(f"popularity_prior_weight must be a number >= 0, got {prior!r}.")
        if (negatives == "trained" or prior > 0) and item_loss_weight == 0:
            raise UserInputError("item_loss_negatives: trained and popularity_prior_weight act on the whole-item "
                                 "loss, which item_loss_weight: 0 turns off.")
        check_unseen_item_count(1.0 if config["unseen_item_count"] is None else config["unseen_item_count"])
        if prior > 0 and config["beam_search"]:
            raise UserInputError("popularity_prior_weight adds a prior to every item's score, which the beam search "
                                 "does not; set beam_search: False or popularity_prior_weight: 0.")
        if config["beam_search"] and int(config["beam_size"] or 0) < max_topk(config):
            raise UserInputError(f"beam_size ({config['beam_size']}) must be >= the largest topk "
                                 f"({max_topk(config)}).")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        codes = require_semantic_ids(self, dataset)
        self.hidden_size = config["hidden_size"]
        self.train_all_positions = bool(config["train_all_positions"])
        self.item_loss_weight = float(config["item_loss_weight"] or 0.0)
        self.item_label_smoothing = float(config["item_label_smoothing"] or 0.0)
        self.aspect_dropout_prob = float(config["aspect_dropout_prob"] or 0.0)
        self.beam_search = bool(config["beam_search"])
        self.beam_size = int(config["beam_size"] or 0)

        real = codes[1:]
        self.n_levels = codes.size(1)
        level_sizes = (real.max(0).values + 1).tolist()
        offsets = torch.tensor([0] + level_sizes[:-1]).cumsum(0)
        self.level_sizes = level_sizes
        self.register_buffer("level_offsets", offsets, persistent=False)
        self.register_buffer("item_codes", codes.clamp(min=0), persistent=False)
        pad_index = int(sum(level_sizes))
        token_index = torch.where(codes >= 0, codes + offsets, torch.full_like(codes, pad_index))
        self.register_buffer("item_token_index", token_index, persistent=False)

        self.token_embedding = nn.Embedding(pad_index + 1, self.hidden_size, padding_idx=pad_index)
        # Content term: the item's text similarity to the last item of the history, with a learned weight.
        self.content_weight = None
        if float(config["content_score_weight"] or 0.0) > 0:
            text = getattr(dataset, "item_text_embeddings", None)
            if text is None:
                raise UserInputError("content_score_weight needs the dataset's item_text_embeddings (LAMIADataset "
                                     "builds them when content_score_weight > 0).")
            vectors = F.normalize(text.flatten(1).float(), dim=-1)
            vectors[0] = 0.0  # padding
            self.register_buffer("content_vectors", vectors, persistent=False)
            self.content_weight = nn.Parameter(torch.tensor(float(config["content_score_weight"])))
        self._init_item_prior(config, dataset)
        self.item_id_embedding = None
        if config["use_item_id_embedding"]:
            self.item_id_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.trm_encoder = TransformerEncoder(
            n_layers=config["n_layers"], n_heads=config["n_heads"], hidden_size=self.hidden_size,
            inner_size=config["inner_size"], hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"], hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        self.layer_norm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        # One query per level, scored against that level's token embeddings (tied output layer).
        self.level_query = nn.Linear(self.hidden_size, self.n_levels * self.hidden_size)
        self.initializer_range = config["initializer_range"]
        self.apply(self._init_weights)
        self._trie = None
        self._folded_items = None  # (weights' versions, vectors, offsets) of folded_item_vectors

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def item_token_vectors(self):
        """``[n_items, h, hidden]``: every item's token embeddings (row 0, padding, is the padding token's)."""
        return self.token_embedding(self.item_token_index)

    def item_representation(self, items, keep=None):
        """``[..., hidden]`` embedding of items from their semantic tokens (plus the optional ID embedding).

        ``keep`` (``[..., h]`` booleans) sums only the kept tokens, rescaled by ``1 / (1 - aspect_dropout_prob)``.
        """
        if keep is None and not self.training:
            # An evaluation batch gathers h token vectors at every history position ([4096, 50, h, hidden]
            # on amazon-beauty); summing them once per item and indexing that table gives bitwise the same sums
            # in far less memory (peak RSS 3.35 -> 2.62 GB there). Training keeps the gather, so its runs are unchanged.
            rep = self.item_token_vectors().sum(-2)[items]
        else:
            tokens = self.token_embedding(self.item_token_index[items])  # [..., h, hidden]
            if keep is None:
                rep = tokens.sum(-2)
            else:
                rep = (tokens * keep.unsqueeze(-1)).sum(-2) / (1.0 - self.aspect_dropout_prob)
        if self.item_id_embedding is not None:
            rep = rep + self.item_id_embedding(items)
        return rep

    def history_representation(self, item_seq):
        """``[B, L, hidden]`` history items from their tokens; in training each aspect's token is dropped with
        ``aspect_dropout_prob`` (the rest rescaled), so the model cannot lean on one item's exact token mix.
        An item that loses all h tokens (probability p^h: 7e-12 for p = 0.2, h = 16) looks like padding."""
        if not (self.training and self.aspect_dropout_prob > 0):
            return self.item_representation(item_seq)
        keep = torch.rand(self.item_token_index[item_seq].shape, device=item_seq.device) >= self.aspect_dropout_prob
        return self.item_representation(item_seq, keep)

    def encode_sequence(self, item_seq):
        """``[B, L, hidden]`` causal encoding of every position of the history."""
        positions = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0).expand_as(item_seq)
        hidden = self.history_representation(item_seq) + self.position_embedding(positions)
        hidden = self.dropout(self.layer_norm(hidden))
        mask = self.get_attention_mask(item_seq)
        return self.trm_encoder(hidden, mask, output_all_encoded_layers=True)[-1]

    def forward(self, item_seq, item_seq_len):
        return self.gather_indexes(self.encode_sequence(item_seq), item_seq_len - 1)

    def level_logits(self, seq_output):
        """Logits of each level's tokens: a list of ``[B, level_size]`` tensors."""
        queries = self.level_query(seq_output).view(-1, self.n_levels, self.hidden_size)
        out = []
        for level, size in enumerate(self.level_sizes):
            start = int(self.level_offsets[level])
            table = self.token_embedding.weight[start:start + size]
            out.append(queries[:, level] @ table.t())
        return out

    def level_log_probs(self, seq_output):
        """Log-probabilities of each level's tokens: a list of ``[B, level_size]`` tensors."""
        return [F.log_softmax(logits, dim=-1) for logits in self.level_logits(seq_output)]

    def _history_output(self, interaction):
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])

    def calculate_loss(self, interaction):
        if self.train_all_positions:
            output, target_items, last_items = self._all_position_targets(interaction)
        else:
            output, target_items = self._history_output(interaction), interaction[self.POS_ITEM_ID]
            last_items = self._last_items(interaction)
        log_probs = self.level_log_probs(output)
        target = self.item_codes[target_items]
        loss = sum(F.nll_loss(lp, target[:, level]) for level, lp in enumerate(log_probs)) / self.n_levels
        if self.item_loss_weight > 0:
            loss = loss + self.item_loss_weight * self.item_loss(output, target_items, last_items)
        return loss

    def item_loss(self, seq_output, target_items, last_items=None):
        """Cross-entropy of the whole next item over every real item, with ``item_label_smoothing`` spread
        over the real items only (column 0, padding, is dropped so the smoothing term stays finite)."""
        logits = self.item_logits(seq_output) + self.content_scores(last_items)
        if self.trained_columns is None:
            return F.cross_entropy(logits[:, 1:], target_items - 1, label_smoothing=self.item_label_smoothing)
        logits = logits[:, self.trained_columns] + self.train_prior
        return F.cross_entropy(logits, self.column_of_item[target_items], label_smoothing=self.item_label_smoothing)

    def _init_item_prior(self, config, dataset):
        """Buffers of ``item_loss_negatives: trained`` and ``popularity_prior_weight`` (None when both are off).

        * ``trained_columns``: the items that are a training target, the only ones the whole-item softmax covers.
          An item never trained on (a cold item) is then never pushed down by the whole-item loss, so its score
          comes from the tokens it shares with trained items, as a new item's should. (The per-aspect token
          losses still see every token.)
        * ``train_prior``: ``popularity_prior_weight`` times the log of each of those items' share of training
          targets, added to the whole-item training logits (logit adjustment): the tokens need not encode
          popularity, so the score they give an unseen item is on the scale of the trained ones'.
        * ``train_target_counts``: the counts, saved with the weights, so a loaded model scores with its training
          split's counts; ``item_prior`` adds the same prior to every score, an unseen item counted as
          ``unseen_item_count`` targets (the model's guess of a new item's popularity).
        """
        self._prior_weight = float(config["popularity_prior_weight"] or 0.0)
        unseen = config["unseen_item_count"]
        self.unseen_item_count = float(1.0 if unseen is None else unseen)
        for name in ("trained_columns", "column_of_item", "train_prior"):
            self.register_buffer(name, None, persistent=False)
        self.register_buffer("train_target_counts", None)
        if (config["item_loss_negatives"] or "all") == "all" and self._prior_weight == 0:
            return
        counts = training_target_counts(dataset, self.ITEM_SEQ, self.ITEM_SEQ_LEN, self.train_all_positions,
                                        self.n_items)
        counts[0] = 0  # padding
        trained = torch.nonzero(counts > 0).squeeze(1)
        if len(trained) == 0:
            raise UserInputError("item_loss_negatives: trained and popularity_prior_weight need a training split "
                                 "with at least one target.")
        column_of_item = torch.full((self.n_items,), -1, dtype=torch.long)  # an untrained target fails loudly
        column_of_item[trained] = torch.arange(len(trained))
        self.trained_columns, self.column_of_item = trained, column_of_item
        self.train_prior = self._prior_weight * torch.log(counts[trained].double() / counts.sum()).float()
        if self._prior_weight > 0:
            self.train_target_counts = counts

    def set_unseen_item_count(self, count):
        """Score items with no training targets as if they had ``count`` (``popularity_prior_weight`` > 0).

        Unseen items are outside the training softmax, so the weights do not depend on it; but validation scores
        with it, so it also decides which epoch is the best checkpoint. ``benchmarks/unseen_prior_sweep.py``
        rescores one trained checkpoint with other counts.
        """
        if self._prior_weight == 0:
            raise UserInputError("set_unseen_item_count needs popularity_prior_weight > 0.")
        self.unseen_item_count = check_unseen_item_count(count)

    def item_prior(self, items=None):
        """The popularity prior of the items' scores (``[n_items]``, or of ``items``); 0 when it is off."""
        if self.train_target_counts is None:
            return 0.0
        counts = self.train_target_counts.double()
        smoothed = torch.where(counts > 0, counts, torch.full_like(counts, self.unseen_item_count))
        prior = (self._prior_weight * torch.log(smoothed / counts.sum())).float()
        prior[0] = 0.0  # padding's score is -inf already
        return prior if items is None else prior[items]

    def _last_items(self, interaction):
        """``[B]``: the last item of each history."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        return item_seq.gather(1, (item_seq_len - 1).unsqueeze(1)).squeeze(1)

    def content_scores(self, last_items, items=None):
        """The content term of the item scores: ``content_weight`` times the cosine similarity of each item's text
        embedding to the last history item's (0 for that item itself, which a next-item model should not be
        pushed towards). ``[B, n_items]``, or ``[B]`` for one candidate per row (``items``); 0 when it is off."""
        if self.content_weight is None or last_items is None:
            return 0.0
        last = self.content_vectors[last_items]
        if items is None:
            similarity = last @ self.content_vectors.t()
            similarity.scatter_(1, last_items.unsqueeze(1), 0.0)
        else:
            similarity = (last * self.content_vectors[items]).sum(-1).masked_fill(items == last_items, 0.0)
        return self.content_weight * similarity

    def item_logits(self, seq_output):
        """``[B, n_items]`` joint logits of whole item IDs: the sum of each level's token logit.

        Softmax over these is the product of the per-level token distributions renormalised over the
        real items' IDs, so its cross-entropy trains the exact ranking ``full_sort_predict`` uses.
        Column 0 (padding) is -inf. Evaluation (no gradient) takes the same logits from the cached
        ``folded_item_vectors``.
        """
        if not (self.training or torch.is_grad_enabled()):
            vectors, offsets = self.folded_item_vectors()
            return seq_output @ vectors.t() + offsets
        queries = self.level_query(seq_output)
        item_tables = self.item_token_vectors().flatten(1)  # [n_items, h * hidden]
        logits = queries @ item_tables.t()
        logits[:, 0] = float("-inf")
        return logits

    def train(self, mode=True):
        """``nn.Module.train``, which also drops the cached folded item vectors."""
        self._folded_items = None  # weights may change from here on (the version key also catches in-place steps)
        return super().train(mode)

    def folded_item_vectors(self):
        """``([n_items, hidden], [n_items])`` with ``item_logits(h) == h @ vectors.T + offsets``.

        The level queries are one linear map of h, so an item's h products with its tokens fold into one
        hidden-size vector (``tables @ W``) and one offset (``tables @ b``): scoring every item then costs a
        ``[B, hidden] x [hidden, n_items]`` product, as SASRec's, instead of ``[B, h * hidden] x [h * hidden,
        n_items]``. Cached while the weights are unchanged (their in-place version counters key the cache).
        """
        weights = (self.token_embedding.weight, self.level_query.weight, self.level_query.bias)
        key = tuple((w.data_ptr(), w._version) for w in weights)
        if self._folded_items is None or self._folded_items[0] != key:
            with torch.no_grad():
                tables = self.item_token_vectors().flatten(1)  # [n_items, h * hidden]
                vectors = tables @ self.level_query.weight
                offsets = tables @ self.level_query.bias
                offsets[0] = float("-inf")  # padding
            self._folded_items = (key, vectors, offsets)
        return self._folded_items[1], self._folded_items[2]

    def _all_position_targets(self, interaction):
        """Outputs, next items and last seen items at every real position (the next item is the history shifted by
        one, then the target; the last seen item is the item at that position)."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        output = self.encode_sequence(item_seq)
        targets = torch.cat([item_seq[:, 1:], item_seq.new_zeros(item_seq.size(0), 1)], dim=1)
        targets[torch.arange(item_seq.size(0), device=item_seq.device), item_seq_len - 1] = \
            interaction[self.POS_ITEM_ID]
        valid = torch.arange(item_seq.size(1), device=item_seq.device)[None, :] < item_seq_len[:, None]
        return output[valid], targets[valid], item_seq[valid]

    def predict(self, interaction):
        """``[B]`` score of each row's ``ITEM_ID`` after its history: the sum of its tokens' log-probabilities.

        RecBole's sampled evaluation (``uni100``, ``pop100``) repeats each history once per candidate item, so
        each distinct history is encoded once and every row reads its candidate's tokens from that one output.
        """
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        histories, row_history = distinct_rows(torch.cat([item_seq, item_seq_len.unsqueeze(1)], dim=1))
        log_probs = self.level_log_probs(self.forward(histories[:, :-1], histories[:, -1]))
        items = interaction[self.ITEM_ID]
        target = self.item_codes[items]
        token_scores = sum(lp[row_history, target[:, level]] for level, lp in enumerate(log_probs))
        return token_scores + self.content_scores(self._last_items(interaction), items) + self.item_prior(items)

    def full_sort_predict(self, interaction):
        output = self._history_output(interaction)
        if self.beam_search:
            return self._beam_scores(self.level_log_probs(output))
        # sum_l log p_l(c_l) = (sum_l logit_l(c_l)) - sum_l logsumexp_l: one matmul over all items instead
        # of h gathers of [B, n_items] (benchmarks/full_sort_scoring.py). Column 0, padding, is -inf.
        log_normalisers = sum(torch.logsumexp(logits, dim=-1) for logits in self.level_logits(output))
        content = self.content_scores(self._last_items(interaction))
        return self.item_logits(output) - log_normalisers.unsqueeze(1) + content + self.item_prior()

    @property
    def trie(self):
        if self._trie is None:
            self._trie = PrefixTrie(self.item_codes[1:].cpu().numpy(), item_ids=range(1, self.n_items))
            self._trie.to(self.item_codes.device)
        return self._trie

    def _beam_scores(self, log_probs):
        batch = log_probs[0].size(0)

        def scorer(level, prefix, _parent):  # the levels are predicted in parallel: no per-beam state
            return log_probs[level].unsqueeze(1).expand(-1, prefix.size(1), -1)

        items, beam_scores = constrained_beam_search(self.trie, scorer, batch, self.beam_size,
                                                     device=log_probs[0].device)
        scores = torch.full((batch, self.n_items), float("-inf"), device=log_probs[0].device)
        valid = items >= 0
        scores[torch.arange(batch, device=items.device).unsqueeze(1).expand_as(items)[valid], items[valid]] = \
            beam_scores[valid]
        return scores
