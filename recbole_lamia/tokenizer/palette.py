"""The item palette: h learnable palette tokens read an item's text through the encoder's top layers."""

import torch
from torch import nn
from torch.nn import functional as F

from recbole_lamia.utils.errors import UserInputError


def _is_bert_layer(layer):
    return all(hasattr(layer, name) for name in ("attention", "intermediate", "output")) and hasattr(
        getattr(layer.attention, "self", None), "query")


def bert_layer_for_last_tokens(layer, hidden, attention_bias, n_last):
    """A BERT layer's output for the last ``n_last`` positions only.

    Exactly what the full layer gives at those positions, but queries, the attention output and the
    feed-forward run for ``n_last`` tokens instead of all of them: the palette's last layer reads the
    text tokens only as keys and values.
    """
    attn = layer.attention.self
    batch, seq, _ = hidden.shape
    heads, head_size = attn.num_attention_heads, attn.attention_head_size
    last = hidden[:, -n_last:]
    query = attn.query(last).view(batch, n_last, heads, head_size).transpose(1, 2)
    key = attn.key(hidden).view(batch, seq, heads, head_size).transpose(1, 2)
    value = attn.value(hidden).view(batch, seq, heads, head_size).transpose(1, 2)
    scores = query @ key.transpose(-1, -2) * attn.scaling + attention_bias[:, :, -n_last:, :]
    probs = attn.dropout(torch.softmax(scores, dim=-1))
    context = (probs @ value).transpose(1, 2).reshape(batch, n_last, heads * head_size)
    attended = layer.attention.output(context, last)
    return layer.output(layer.intermediate(attended), attended)


def _head_count(dim):
    for heads in (8, 6, 4, 2):
        if dim % heads == 0:
            return heads
    return 1


class PaletteEncoder(nn.Module):
    """Appends ``palette_size`` palette tokens to cached text states and runs the top encoder layers.

    The lower layers are frozen and their output for the text tokens is cached once, so the palette
    tokens enter at layer ``num_layers - tune_layers``. For a causal LM they sit after the text.

    Args:
        stack (LayerStack): the encoder's layers.
        palette_size (int): h, the number of aspects.
        palette_dim (int): size of each projected palette vector.
        tune_layers (int): how many top layers run (and are tuned) with the palette tokens.
    """

    def __init__(self, stack, palette_size, palette_dim, tune_layers):
        super().__init__()
        if not 1 <= tune_layers <= stack.num_layers:
            raise UserInputError(f"palette_tune_layers must be in [1, {stack.num_layers}], got {tune_layers}.")
        self.stack = stack
        self.start_layer = stack.num_layers - tune_layers
        self.top_layers = nn.ModuleList(stack.layers[self.start_layer:])
        self.final_norm = stack.final_norm
        self.palette_size = palette_size
        self.palette_tokens = nn.Parameter(torch.randn(palette_size, stack.hidden_size) * 0.02)
        self.projection = nn.Linear(stack.hidden_size, palette_dim)

    def init_palette_tokens(self, text_state_mean, text_state_std, generator):
        """Start the palette tokens in the distribution of the cached text states, distinct per aspect."""
        noise = torch.randn(self.palette_tokens.shape, generator=generator)
        with torch.no_grad():
            self.palette_tokens.copy_(text_state_mean + noise * text_state_std)

    def forward(self, text_states, text_mask):
        """Return ``(hidden, palette)``: ``[B, h, d]`` final palette states and ``[B, h, palette_dim]``."""
        batch = text_states.size(0)
        palette = self.palette_tokens.unsqueeze(0).expand(batch, -1, -1).to(text_states.dtype)
        hidden = torch.cat([text_states, palette], dim=1)
        mask = torch.cat([text_mask, text_mask.new_ones(batch, self.palette_size)], dim=1)
        bias = self.stack.attention_bias(mask, self.palette_size).to(hidden.dtype)
        extra = self.stack.layer_kwargs(text_mask, self.palette_size)
        extra = {key: value.to(hidden.dtype) for key, value in extra.items()}
        *lower, last = self.top_layers
        for layer in lower:
            out = layer(hidden, attention_mask=bias, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        if _is_bert_layer(last):  # BERT's layout only; MPNet's last layer runs whole
            hidden = bert_layer_for_last_tokens(last, hidden, bias, self.palette_size)
        else:
            out = last(hidden, attention_mask=bias, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
        palette_hidden = hidden[:, -self.palette_size:]
        return palette_hidden, self.projection(palette_hidden)


class TextReconstructionDecoder(nn.Module):
    """A light transformer decoder that regenerates an item's text tokens from its palette alone.

    Teacher forcing; the output layer is tied to the encoder's (frozen) word embeddings, restricted to
    the token ids that occur in the dataset's item texts (``vocab_subset``) to keep the softmax cheap.
    """

    def __init__(self, word_embeddings, vocab_subset, max_length, num_layers=1, dropout=0.1):
        super().__init__()
        dim = word_embeddings.embedding_dim
        self.word_embeddings = word_embeddings
        self.register_buffer("vocab_subset", vocab_subset, persistent=False)
        full_to_subset = torch.full((word_embeddings.num_embeddings,), -100, dtype=torch.long)
        full_to_subset[vocab_subset] = torch.arange(len(vocab_subset))
        self.register_buffer("full_to_subset", full_to_subset, persistent=False)
        self.start = nn.Parameter(torch.zeros(dim))
        self.positions = nn.Embedding(max_length, dim)
        layer = nn.TransformerDecoderLayer(
            dim, _head_count(dim), dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        self.norm = nn.LayerNorm(dim)

    def forward(self, palette_hidden, target_ids, target_mask):
        """Mean token cross-entropy of regenerating ``target_ids`` ``[B, T]`` from ``palette_hidden``."""
        batch, length = target_ids.shape
        with torch.no_grad():
            token_inputs = self.word_embeddings(target_ids[:, :-1])
        inputs = torch.cat([self.start.expand(batch, 1, -1), token_inputs], dim=1)
        inputs = inputs + self.positions(torch.arange(length, device=target_ids.device))
        causal = torch.ones(length, length, dtype=torch.bool, device=target_ids.device).triu(1)
        out = self.decoder(inputs, palette_hidden, tgt_mask=causal, tgt_is_causal=True,
                           tgt_key_padding_mask=~target_mask)
        out = self.norm(out)[target_mask]
        logits = out @ self.word_embeddings.weight[self.vocab_subset].t()
        return F.cross_entropy(logits, self.full_to_subset[target_ids[target_mask]])


def aspect_info_nce(view1, view2, temperature):
    """InfoNCE per aspect with in-batch negatives, symmetric, averaged over aspects.

    ``view1``/``view2`` are ``[B, h, p]`` palettes of the same items under two stochastic views.
    """
    z1, z2 = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    logits = torch.einsum("bhp,chp->hbc", z1, z2) / temperature  # [h, B, B]
    labels = torch.arange(z1.size(0), device=z1.device).expand(z1.size(1), -1)
    flat = logits.reshape(-1, logits.size(-1))
    loss = F.cross_entropy(flat, labels.reshape(-1))
    loss_t = F.cross_entropy(logits.transpose(1, 2).reshape(-1, logits.size(-1)), labels.reshape(-1))
    return (loss + loss_t) / 2


def aspect_similarity(palette):
    """``[h, h]`` mean cosine similarity between the aspects of the same item."""
    z = F.normalize(palette, dim=-1)
    return torch.einsum("bhp,bgp->hg", z, z) / z.size(0)


def aspect_decorrelation(palette):
    """Mean squared cosine similarity between different aspects of the same item (0 when apart)."""
    z = F.normalize(palette, dim=-1)
    sim = torch.einsum("bhp,bgp->bhg", z, z)
    h = sim.size(-1)
    if h == 1:
        return sim.new_zeros(())
    off_diagonal = sim[:, ~torch.eye(h, dtype=torch.bool, device=sim.device)]
    return off_diagonal.pow(2).mean()
