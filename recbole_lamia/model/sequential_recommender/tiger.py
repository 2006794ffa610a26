"""TIGER (Rajput et al., 2023): a T5 encoder-decoder that generates the next item's semantic ID."""

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch.nn import functional as F
from transformers import T5Config, T5ForConditionalGeneration

from recbole_lamia.model.layers.dropout import use_cpu_fast_dropout
from recbole_lamia.model.layers.t5_decoding import T5BeamDecoder
from recbole_lamia.model.layers.trie import PrefixTrie, constrained_beam_search
from recbole_lamia.model.sequential_recommender.lamia import distinct_rows, max_topk, require_semantic_ids
from recbole_lamia.utils.errors import UserInputError

PAD_TOKEN = 0  # padding, and T5's decoder start token


def length_groups(lengths, overhead_tokens):
    """Split rows into groups of similar length, so that each group runs trimmed to its own longest row.

    ``lengths`` ``[B]``: tokens in use per row. Returns ``[(rows, width)]``, rows as an index tensor. The split
    minimises the sum over groups of ``overhead_tokens + len(rows) * width`` (padding computed plus a fixed cost
    per pass), by dynamic programming over the distinct lengths, of which there are few.
    """
    widths, inverse, counts = torch.unique(lengths, return_inverse=True, return_counts=True)
    widths, counts = widths.tolist(), counts.tolist()
    best = [0.0] + [float("inf")] * len(widths)  # best[j]: cost of the j shortest distinct lengths
    cut = [0] * (len(widths) + 1)
    for j in range(1, len(widths) + 1):
        rows = 0
        for i in range(j, 0, -1):  # the last group holds distinct lengths i-1 .. j-1
            rows += counts[i - 1]
            cost = best[i - 1] + overhead_tokens + rows * widths[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    groups, j = [], len(widths)
    while j > 0:
        i = cut[j]
        in_group = (inverse >= i) & (inverse < j)
        groups.append((in_group.nonzero().squeeze(1), max(1, widths[j - 1])))
        j = i
    return groups


class TIGER(SequentialRecommender):
    """Reads the history as a flat sequence of semantic tokens and decodes the next item's L tokens.

    * Vocabulary: ``0`` = pad / decoder start, then each level's codes at their own offset, then the
      optional user tokens (``tiger_use_user_token``: the user id hashed into ``tiger_user_buckets``).
    * Encoder input: the last ``MAX_ITEM_LIST_LENGTH`` items, each as its L tokens, left-aligned with
      an attention mask (T5's relative positions make the alignment irrelevant), after the user token.
    * Training: teacher-forced cross-entropy over the target item's L tokens (``calculate_loss``).
    * Inference: beam search constrained by the prefix trie of real IDs, so every beam is an item;
      ``full_sort_predict`` gives beam items their log-probability and every other item ``-inf``.
    """

    input_type = InputType.POINTWISE
    # Upper bound on the decoder rows (users x beams) of one beam-search pass; bounds memory.
    max_beam_rows = 4096
    # Cost of one extra pass, in encoder tokens, when a batch is split by history length (``length_groups``).
    group_overhead_tokens = 1024

    @classmethod
    def check_config(cls, config):
        """Raise ``UserInputError`` for settings TIGER cannot run with; cheap, so it runs before any data is read."""
        if int(config["beam_size"] or 0) < max_topk(config):
            raise UserInputError(f"beam_size ({config['beam_size']}) must be >= the largest topk "
                                 f"({max_topk(config)}): items outside the beam all score -inf.")
        if config["train_all_positions"]:
            raise UserInputError("TIGER learns one target per training sample; set train_all_positions: False "
                                 "(otherwise the dataset would drop most training prefixes).")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        codes = require_semantic_ids(self, dataset)
        self.beam_size = int(config["beam_size"] or 0)
        self.use_user_token = bool(config["tiger_use_user_token"])
        self.user_buckets = int(config["tiger_user_buckets"] or 2000)

        real = codes[1:]
        self.n_levels = codes.size(1)
        self.level_sizes = (real.max(0).values + 1).tolist()
        # Token id of code c at level l: 1 + (codes of the levels before l) + c.
        offsets = 1 + torch.tensor([0] + self.level_sizes[:-1]).cumsum(0)
        self.register_buffer("level_offsets", offsets, persistent=False)
        self.register_buffer("item_codes", codes.clamp(min=0), persistent=False)
        tokens = torch.where(codes >= 0, codes + offsets, torch.full_like(codes, PAD_TOKEN))
        self.register_buffer("item_tokens", tokens, persistent=False)
        self.user_token_offset = 1 + int(sum(self.level_sizes))
        vocab_size = self.user_token_offset + (self.user_buckets if self.use_user_token else 0)

        t5_config = T5Config(
            vocab_size=vocab_size, d_model=config["d_model"], d_kv=config["d_kv"], d_ff=config["d_ff"],
            num_layers=config["num_encoder_layers"], num_decoder_layers=config["num_decoder_layers"],
            num_heads=config["num_heads"], dropout_rate=config["dropout_rate"],
            relative_attention_num_buckets=config["relative_attention_num_buckets"] or 32,
            feed_forward_proj="relu", pad_token_id=PAD_TOKEN, decoder_start_token_id=PAD_TOKEN,
            eos_token_id=None,  # IDs have a fixed length, so generation needs no end token
            use_cache=False,  # only the beam search uses the decoder's key/value cache, and asks for it
        )
        self.t5 = T5ForConditionalGeneration(t5_config)
        if config["fast_dropout"] is None or bool(config["fast_dropout"]):  # absent from older configs: on
            use_cpu_fast_dropout(self.t5)
        self._trie = None

    # --- inputs -------------------------------------------------------------------------------------

    def encoder_inputs(self, interaction):
        """``(input_ids, attention_mask)`` ``[B, (1 +) T * L]``: the history's tokens, pads masked out."""
        item_seq = interaction[self.ITEM_SEQ]
        input_ids = self.item_tokens[item_seq].flatten(1)
        if self.use_user_token:
            # RecBole's user ids are arbitrary integers, so the modulo is as good a hash as any.
            user_tokens = self.user_token_offset + interaction[self.USER_ID] % self.user_buckets
            input_ids = torch.cat([user_tokens.unsqueeze(1), input_ids], dim=1)
        return input_ids, input_ids != PAD_TOKEN

    def _decoder_inputs(self, target_tokens):
        """Teacher forcing: the decoder reads the start token then the first L - 1 target tokens."""
        start = target_tokens.new_full((target_tokens.size(0), 1), PAD_TOKEN)
        return torch.cat([start, target_tokens[:, :-1]], dim=1)

    def _encode(self, interaction):
        input_ids, attention_mask = self.encoder_inputs(interaction)
        hidden = self.t5.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden, attention_mask

    def _length_groups(self, attention_mask):
        """``length_groups`` of the rows of ``attention_mask``: each row's width is its last real token + 1
        (histories are left-aligned, so what lies beyond is padding that no real token attends to)."""
        positions = torch.arange(1, attention_mask.size(1) + 1, device=attention_mask.device)
        return length_groups((positions * attention_mask).amax(1), self.group_overhead_tokens)

    def _token_log_probs(self, hidden, attention_mask, target_tokens):
        """``[B, L]`` teacher-forced log-probabilities of ``target_tokens`` over the full vocabulary."""
        logits = self.t5(encoder_outputs=(hidden,), attention_mask=attention_mask,
                         decoder_input_ids=self._decoder_inputs(target_tokens)).logits
        return F.log_softmax(logits, dim=-1).gather(-1, target_tokens.unsqueeze(-1)).squeeze(-1)

    # --- training -----------------------------------------------------------------------------------

    def calculate_loss(self, interaction):
        """Mean token cross-entropy of the batch, computed over groups of similar history length, each trimmed
        to its longest history: the same loss as one padded pass, with far less padding."""
        input_ids, attention_mask = self.encoder_inputs(interaction)
        target_tokens = self.item_tokens[interaction[self.POS_ITEM_ID]]
        loss = 0.0
        for rows, width in self._length_groups(attention_mask):
            targets = target_tokens[rows]
            logits = self.t5(input_ids=input_ids[rows, :width], attention_mask=attention_mask[rows, :width],
                             decoder_input_ids=self._decoder_inputs(targets)).logits
            loss = loss + F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
        return loss / target_tokens.numel()

    # --- inference ----------------------------------------------------------------------------------

    def predict(self, interaction):
        """Log-probability of ``interaction[ITEM_ID]``: the sum of its tokens' teacher-forced log-probs.

        RecBole's sampled evaluation (``uni100``, ``pop100``) repeats each history once per candidate item, so
        the encoder runs once per distinct input; only the short decoder runs per candidate.
        """
        input_ids, attention_mask = self.encoder_inputs(interaction)
        inputs, row_input = distinct_rows(input_ids)
        hidden = self.t5.get_encoder()(input_ids=inputs, attention_mask=inputs != PAD_TOKEN).last_hidden_state
        target_tokens = self.item_tokens[interaction[self.ITEM_ID]]
        return self._token_log_probs(hidden[row_input], attention_mask, target_tokens).sum(-1)

    @property
    def trie(self):
        if self._trie is None:
            self._trie = PrefixTrie(self.item_codes[1:].cpu().numpy(), item_ids=range(1, self.n_items))
        if self._trie.leaf_item.device != self.item_codes.device:
            self._trie.to(self.item_codes.device)
        return self._trie

    def beam_search(self, interaction, use_cache=True):
        """``(items [B, beam], log_probs [B, beam])``, best first; every item is real (-1 pads a short beam).

        Users are grouped by history length (each group's encoder pass trimmed to its longest history) and at
        most ``max_beam_rows`` decoder rows run at once. The decoder reads one new token per beam and level
        (``T5BeamDecoder``: cached self-attention, the encoder's keys shared by a user's beams);
        ``use_cache=False`` reruns the model's own forward pass on the whole prefix instead (the same beams, far
        slower; the reference in tests).
        """
        input_ids, attention_mask = self.encoder_inputs(interaction)
        users = input_ids.size(0)
        items = torch.full((users, self.beam_size), -1, dtype=torch.long, device=input_ids.device)
        scores = torch.full((users, self.beam_size), float("-inf"), device=input_ids.device)
        users_per_pass = max(1, self.max_beam_rows // self.beam_size)
        for group, width in self._length_groups(attention_mask):
            for rows in group.split(users_per_pass):
                mask = attention_mask[rows, :width]
                hidden = self.t5.get_encoder()(input_ids=input_ids[rows, :width], attention_mask=mask).last_hidden_state
                found, found_scores = self._beam_search_encoded(hidden, mask, use_cache)
                items[rows, :found.size(1)] = found
                scores[rows, :found.size(1)] = found_scores
        return items, scores

    def _beam_search_encoded(self, hidden, attention_mask, use_cache=True):
        batch, device = hidden.size(0), hidden.device
        decoder = T5BeamDecoder(self.t5, hidden, attention_mask) if use_cache else None

        def level_scorer(level, prefix, parent):
            width = prefix.size(1)
            if use_cache:  # one new token per beam: the start token, then the newest chosen code
                newest = prefix.new_full((batch, 1), PAD_TOKEN) if level == 0 else \
                    prefix[:, :, -1] + self.level_offsets[level - 1]
                logits = decoder.step(newest, parent).reshape(batch * width, -1)
            else:  # the whole prefix, [start, prefix tokens], through the model's own forward pass
                user = torch.arange(batch, device=device).repeat_interleave(width)
                prefix_tokens = (prefix + self.level_offsets[:level]).reshape(batch * width, level)
                decoder_input = torch.cat([prefix_tokens.new_full((batch * width, 1), PAD_TOKEN), prefix_tokens], 1)
                logits = self.t5(encoder_outputs=(hidden[user],), attention_mask=attention_mask[user],
                                 decoder_input_ids=decoder_input).logits[:, -1]
            offset, size = int(self.level_offsets[level]), self.level_sizes[level]
            log_probs = F.log_softmax(logits, dim=-1)[:, offset:offset + size]
            return log_probs.reshape(batch, width, size)

        return constrained_beam_search(self.trie, level_scorer, batch, self.beam_size, device=device)

    def full_sort_predict(self, interaction):
        items, beam_scores = self.beam_search(interaction)
        batch = items.size(0)
        scores = torch.full((batch, self.n_items), float("-inf"), device=beam_scores.device)
        valid = items >= 0
        rows = torch.arange(batch, device=items.device).unsqueeze(1).expand_as(items)
        scores[rows[valid], items[valid]] = beam_scores[valid]
        return scores
