"""Incremental decoding of a transformers T5 decoder for beam search, with the encoder's keys shared by all beams.

transformers' own key/value cache keeps one copy of the cross-attention keys and values per decoder row, so a
beam of W copies them W times and reorders those copies at every step (most of TIGER's beam-search time). Here
the cross-attention keys and values are computed once per user and each user's W beams attend to them as W
queries of one attention call; only the small self-attention cache (one entry per generated token) is
reordered. The arithmetic is T5's: the same modules and weights, called in the same order (tested against the
model's full, uncached forward pass in ``tests/test_tiger.py``). Evaluation only: dropout is not applied.
"""

import torch
from torch.nn import functional as F


class T5BeamDecoder:
    """Decodes one token per beam and step for a batch of users whose encoder output is ``hidden``.

    ``step(tokens, parent)`` takes the newest token of each beam (``[B, W]``) and, from the second step on, the
    parent beam of each (``[B, W]`` indices into the previous step's beams); it returns ``[B, W, vocab]`` logits
    of the next token.
    """

    def __init__(self, t5, hidden, attention_mask):
        self.t5 = t5
        self.decoder = t5.get_decoder()
        config = t5.config
        self.heads, self.head_dim = config.num_heads, config.d_kv
        self.batch = hidden.size(0)
        # Per layer: the encoder's keys and values, [B, heads, S, head_dim], once per user.
        self.cross = []
        for block in self.decoder.block:
            attention = block.layer[1].EncDecAttention
            self.cross.append((self._split_heads(attention.k(hidden)), self._split_heads(attention.v(hidden))))
        # Additive mask over the encoder positions, [B, 1, 1, S].
        self.cross_mask = torch.zeros(attention_mask.shape, dtype=hidden.dtype, device=hidden.device)
        self.cross_mask = self.cross_mask.masked_fill(attention_mask == 0, torch.finfo(hidden.dtype).min)[:, None, None]
        self.self_cache = [None] * len(self.decoder.block)  # per layer: (keys, values), [B * W, heads, t, head_dim]
        self.position = 0
        self.scale_output = getattr(config, "scale_decoder_outputs", config.tie_word_embeddings)

    def _split_heads(self, states):
        """``[N, T, heads * head_dim]`` -> ``[N, heads, T, head_dim]``."""
        return states.view(states.size(0), -1, self.heads, self.head_dim).transpose(1, 2)

    def _self_attention_bias(self, device):
        """T5's relative position bias of the new token (query) against every token so far, ``[1, heads, 1, t+1]``."""
        attention = self.decoder.block[0].layer[0].SelfAttention
        relative = torch.arange(self.position + 1, device=device) - self.position
        bucket = attention._relative_position_bucket(relative, bidirectional=False,
                                                     num_buckets=attention.relative_attention_num_buckets,
                                                     max_distance=attention.relative_attention_max_distance)
        return attention.relative_attention_bias(bucket).t()[None, :, None, :]

    @torch.no_grad()
    def step(self, tokens, parent=None):
        batch, width = tokens.shape
        if parent is not None:  # each beam continues its parent's self-attention cache
            previous_width = self.self_cache[0][0].size(0) // batch
            rows = (torch.arange(batch, device=tokens.device).unsqueeze(1) * previous_width + parent).reshape(-1)
            self.self_cache = [(keys[rows], values[rows]) for keys, values in self.self_cache]
        x = self.decoder.embed_tokens(tokens.reshape(-1, 1))  # [B * W, 1, d_model]
        position_bias = self._self_attention_bias(tokens.device)
        for index, block in enumerate(self.decoder.block):
            self_layer, cross_layer, feed_forward = block.layer[0], block.layer[1], block.layer[-1]
            attention = self_layer.SelfAttention
            normed = self_layer.layer_norm(x)
            query = self._split_heads(attention.q(normed))
            keys, values = self._split_heads(attention.k(normed)), self._split_heads(attention.v(normed))
            if self.self_cache[index] is not None:
                keys = torch.cat([self.self_cache[index][0], keys], dim=2)
                values = torch.cat([self.self_cache[index][1], values], dim=2)
            self.self_cache[index] = (keys, values)
            weights = F.softmax(query @ keys.transpose(-1, -2) + position_bias, dim=-1)  # T5: no 1/sqrt(d) scaling
            x = x + attention.o((weights @ values).transpose(1, 2).reshape(batch * width, 1, -1))

            attention = cross_layer.EncDecAttention
            query = attention.q(cross_layer.layer_norm(x)).view(batch, width, self.heads, self.head_dim).transpose(1, 2)
            keys, values = self.cross[index]  # [B, heads, S, head_dim]: the W beams are W queries of their user
            weights = F.softmax(query @ keys.transpose(-1, -2) + self.cross_mask, dim=-1)
            x = x + attention.o((weights @ values).transpose(1, 2).reshape(batch * width, 1, -1))

            x = x + feed_forward.DenseReluDense(feed_forward.layer_norm(x))
        x = self.decoder.final_layer_norm(x)
        if self.scale_output:
            x = x * (self.t5.config.d_model ** -0.5)
        self.position += 1
        return self.t5.lm_head(x).view(batch, width, -1)
