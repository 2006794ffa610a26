"""Item embedders: turn item texts into ``[n_items, h, d]`` float arrays for a quantizer.

* ``PaletteEmbedder`` (LAMIA): h palette vectors per item, tuned on the domain's texts.
* ``SentenceEmbedder`` (TIGER, and the "single embedding" ablation): one mean-pooled sentence
  embedding of the frozen encoder, ``h = 1``.
"""

import math
import os
import time
from logging import getLogger

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from recbole_lamia.tokenizer.palette import (
    PaletteEncoder,
    TextReconstructionDecoder,
    aspect_decorrelation,
    aspect_info_nce,
    aspect_similarity,
)
from recbole_lamia.tokenizer.text_encoder import LayerStack, load_text_encoder

# How palette-tuning batches are drawn, i.e. which items serve as in-batch negatives of the contrastive task.
CONTRASTIVE_NEGATIVES = {
    "random": "a random permutation of the items each epoch",
    "similar": "groups of about a quarter batch of mutually similar items (k-means on the cached encoder "
               "states), so an item meets near neighbours (often its brand's other products) as negatives",
}


class TokenizedTexts:
    """Item texts tokenized once, with the field each token came from (for field-dropping views)."""

    SPECIAL = -1  # special tokens ([CLS], [SEP], BOS) are never dropped

    def __init__(self, tokenizer, texts, spans, max_length):
        enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_offsets_mapping=True,
                        add_special_tokens=True)
        special_ids = set(tokenizer.all_special_ids)
        self.input_ids, self.field_ids = [], []
        for ids, offsets, item_spans in zip(enc["input_ids"], enc["offset_mapping"], spans):
            fields = []
            for token_id, (start, end) in zip(ids, offsets):
                if token_id in special_ids or end <= start:
                    fields.append(self.SPECIAL)
                    continue
                field = next((f for f, s, e in item_spans if s <= start < e), self.SPECIAL)
                fields.append(max(field, 0) if field != self.SPECIAL else self.SPECIAL)
            self.input_ids.append(ids)
            self.field_ids.append(fields)
        self.lengths = np.array([len(ids) for ids in self.input_ids])
        self.pad_id = tokenizer.pad_token_id
        self.special_ids = special_ids

    def __len__(self):
        return len(self.input_ids)

    def batch(self, indices):
        """Padded ``(input_ids, attention_mask, field_ids)`` tensors for ``indices``."""
        length = int(self.lengths[indices].max())
        ids = torch.full((len(indices), length), self.pad_id, dtype=torch.long)
        fields = torch.full((len(indices), length), -2, dtype=torch.long)
        for row, index in enumerate(indices):
            n = self.lengths[index]
            ids[row, :n] = torch.tensor(self.input_ids[index])
            fields[row, :n] = torch.tensor(self.field_ids[index])
        return ids, fields != -2, fields

    def length_sorted_batches(self, batch_size):
        order = np.argsort(self.lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def masked_mean(hidden, mask):
    """Mean of ``hidden [B, L, d]`` over the positions where ``mask [B, L]`` is set (0 where none is)."""
    return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


def _item_texts_and_spans(texts, spans):
    # Index 0 is RecBole's padding item; it has no text and is not embedded.
    return texts[1:], spans[1:]


class SentenceEmbedder:
    """One mean-pooled, L2-normalised sentence embedding per item from the frozen text encoder."""

    def __init__(self, params):
        self.params = params
        self.logger = getLogger()
        self.stats = {}

    def embed(self, texts, spans):
        """Return ``[n_items, 1, d]`` float32; row 0 (padding) is zeros."""
        p = self.params
        tokenizer, model = load_text_encoder(p["text_encoder"], p["text_encoder_allow_download"])
        model.eval()
        item_texts, item_spans = _item_texts_and_spans(texts, spans)
        tokens = TokenizedTexts(tokenizer, item_texts, item_spans, p["max_text_length"])
        out = np.zeros((len(texts), 1, model.config.hidden_size), dtype=np.float32)
        start = time.time()
        with torch.no_grad():
            for indices in tqdm(tokens.length_sorted_batches(p["embed_batch_size"]), desc="sentence embedding",
                                disable=not p["show_progress"]):
                ids, mask, _ = tokens.batch(indices)
                hidden = model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
                out[indices + 1, 0] = F.normalize(masked_mean(hidden, mask), dim=-1).numpy()
        self.stats = {"embed_seconds": round(time.time() - start, 2)}
        return out


class PaletteEmbedder:
    """Learns LAMIA's item palette with domain-specific tuning, then returns it.

    The frozen lower layers run once over all item texts and their output is cached; tuning runs only
    the top ``palette_tune_layers`` layers with the palette tokens, the reconstruction decoder and the
    projection. Objectives: text reconstruction, per-aspect InfoNCE over two stochastic views (dropout,
    dropped fields, dropped tokens) and aspect decorrelation; each can be switched off.
    """

    def __init__(self, params, resume_path=None):
        self.params = params
        self.logger = getLogger()
        self.history = []
        self.stats = {}
        # After every tuning epoch the tuning state is saved here, and an interrupted tuning continues from it.
        self.resume_path = resume_path

    def _save_tuning_point(self, epoch, step, encoder, decoder, optimizer, generator):
        from recbole_lamia.utils.checkpoint import CHECKPOINT_FORMAT, plain_value, save_checkpoint

        save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": epoch, "step": step,
                         "encoder": encoder.state_dict(), "decoder": decoder.state_dict() if decoder else None,
                         "optimizer": optimizer.state_dict(), "history": plain_value(self.history),
                         "generator": generator.get_state(), "torch_rng": torch.get_rng_state()},
                        self.resume_path)

    def _load_tuning_point(self, encoder, decoder, optimizer, generator):
        """The epoch and step to continue at, after loading a saved tuning state; ``(0, 0)`` without one."""
        from recbole_lamia.utils.checkpoint import CheckpointError, load_checkpoint

        if not self.resume_path or not os.path.exists(self.resume_path):
            return 0, 0
        try:
            state = load_checkpoint(self.resume_path)
        except CheckpointError as err:
            self.logger.warning(f"Palette tuning starts over: {err}")
            return 0, 0
        encoder.load_state_dict(state["encoder"])
        if decoder is not None:
            decoder.load_state_dict(state["decoder"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = list(state["history"])
        self.logger.info(f"Palette tuning resumes after epoch {state['epoch']} ({self.resume_path}).")
        return state["epoch"] + 1, state["step"]

    def _cache_lower_layers(self, model, tokens, start_layer):
        p = self.params
        max_len = int(tokens.lengths.max())
        states = torch.zeros(len(tokens), max_len, model.config.hidden_size, dtype=torch.float16)
        model.eval()
        with torch.no_grad():
            for indices in tqdm(tokens.length_sorted_batches(p["embed_batch_size"]),
                                desc=f"palette: caching encoder layers 1-{start_layer}",
                                disable=not p["show_progress"]):
                ids, mask, _ = tokens.batch(indices)
                out = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
                hidden = out.hidden_states[start_layer]
                states[torch.as_tensor(indices), : hidden.size(1)] = hidden.to(torch.float16)
        return states

    def _view_mask(self, mask, fields, generator):
        """A stochastic view: drop whole fields and single tokens, never the special tokens."""
        p = self.params
        keep = mask.clone()
        n_fields = int(fields.max().item()) + 1
        if p["field_drop_prob"] > 0 and n_fields > 1:
            drop_field = torch.rand(mask.size(0), n_fields, generator=generator) < p["field_drop_prob"]
            token_field = fields.clamp(min=0)
            dropped = drop_field.gather(1, token_field) & (fields >= 0)
            # never drop every field of an item
            present = torch.zeros(mask.size(0), n_fields, dtype=torch.bool)
            present.scatter_(1, token_field, fields >= 0)
            all_gone = (present & ~drop_field).sum(1) == 0
            dropped[all_gone] = False
            keep &= ~dropped
        if p["token_drop_prob"] > 0:
            drop_token = (torch.rand(mask.shape, generator=generator) < p["token_drop_prob"]) & (fields >= 0)
            keep &= ~drop_token
        return keep

    def embed(self, texts, spans):
        """Tune the palette learner and return ``[n_items, h, palette_dim]`` (L2-normalised; row 0 zeros)."""
        p = self.params
        generator = torch.Generator().manual_seed(int(p["seed"]))
        torch.manual_seed(int(p["seed"]))
        tokenizer, model = load_text_encoder(p["text_encoder"], p["text_encoder_allow_download"])
        stack = LayerStack.from_model(model)
        for param in model.parameters():
            param.requires_grad_(False)
        encoder = PaletteEncoder(stack, p["palette_size"], p["palette_dim"], p["palette_tune_layers"])
        item_texts, item_spans = _item_texts_and_spans(texts, spans)
        tokens = TokenizedTexts(tokenizer, item_texts, item_spans, p["max_text_length"])

        start = time.time()
        states = self._cache_lower_layers(model, tokens, encoder.start_layer)
        self.stats["cache_seconds"] = round(time.time() - start, 2)
        valid = torch.cat([states[i, : tokens.lengths[i]] for i in range(0, len(tokens), max(1, len(tokens) // 256))])
        encoder.init_palette_tokens(valid.float().mean(0), valid.float().std(0), generator)
        for param in encoder.top_layers.parameters():
            param.requires_grad_(True)
        if encoder.final_norm is not None:
            for param in encoder.final_norm.parameters():
                param.requires_grad_(True)

        decoder = None
        if p["use_text_reconstruction"]:
            vocab = sorted({t for ids in tokens.input_ids for t in ids} - set(tokens.special_ids))
            decoder = TextReconstructionDecoder(stack.word_embeddings, torch.tensor(vocab, dtype=torch.long),
                                                max_length=int(tokens.lengths.max()))
        start = time.time()
        if p["palette_epochs"] > 0 and (decoder is not None or p["use_contrastive"] or p["use_decorrelation"]):
            self._tune(encoder, decoder, states, tokens, generator)
        self.stats["tune_seconds"] = round(time.time() - start, 2)

        start = time.time()
        palette = np.zeros((len(texts), p["palette_size"], p["palette_dim"]), dtype=np.float32)
        encoder.eval()
        with torch.no_grad():
            for indices in tokens.length_sorted_batches(p["embed_batch_size"]):
                _, mask, _ = tokens.batch(indices)
                batch_states = states[torch.as_tensor(indices), : mask.size(1)].float()
                _, z = encoder(batch_states, mask)
                palette[indices + 1] = F.normalize(z, dim=-1).numpy()
        self.stats["encode_seconds"] = round(time.time() - start, 2)
        sim = aspect_similarity(torch.from_numpy(palette[1:]))
        self.stats["aspect_similarity_offdiag"] = _offdiag_mean(sim)
        return palette

    def _tune(self, encoder, decoder, states, tokens, generator):
        p = self.params
        params = [q for q in encoder.parameters() if q.requires_grad]
        if decoder is not None:
            params += [q for q in decoder.parameters() if q.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=p["palette_learning_rate"], weight_decay=0.01)
        n_items, batch_size = len(tokens), p["palette_batch_size"]
        steps_per_epoch = math.ceil(n_items / batch_size)
        groups = None
        if p["contrastive_negatives"] == "similar" and p["use_contrastive"]:
            groups = similar_item_groups(states, tokens.lengths, max(2, batch_size // 4), int(p["seed"]))
            self.stats["negative_groups"] = len(groups)
        first_epoch, step = self._load_tuning_point(encoder, decoder, optimizer, generator)
        for epoch in range(first_epoch, p["palette_epochs"]):
            encoder.train()
            if decoder is not None:
                decoder.train()
            if groups is None:
                order = torch.randperm(n_items, generator=generator).numpy()
            else:
                order = grouped_order(groups, generator)
            sums = {"recon": 0.0, "contrastive": 0.0, "decorrelation": 0.0, "total": 0.0}
            bar = tqdm(range(steps_per_epoch), desc=f"palette tuning epoch {epoch}", disable=not p["show_progress"])
            for batch_index in bar:
                indices = order[batch_index * batch_size:(batch_index + 1) * batch_size]
                ids, mask, fields = tokens.batch(indices)
                batch_states = states[torch.as_tensor(indices), : mask.size(1)].float()
                losses = {}
                if p["use_contrastive"]:
                    hidden1, z1 = encoder(batch_states, self._view_mask(mask, fields, generator))
                    _, z2 = encoder(batch_states, self._view_mask(mask, fields, generator))
                    losses["contrastive"] = aspect_info_nce(z1, z2, p["contrastive_temperature"])
                else:
                    hidden1, z1 = encoder(batch_states, mask)
                if decoder is not None:
                    target_mask = mask & (fields >= 0)
                    losses["recon"] = decoder(hidden1, ids, target_mask)
                if p["use_decorrelation"]:
                    losses["decorrelation"] = aspect_decorrelation(z1)
                total = (p["recon_weight"] * losses.get("recon", 0.0)
                         + p["contrastive_weight"] * losses.get("contrastive", 0.0)
                         + p["decorrelation_weight"] * losses.get("decorrelation", 0.0))
                if not torch.isfinite(total):
                    raise FloatingPointError(
                        f"Palette tuning loss is {total.item()} at epoch {epoch}, step {batch_index} "
                        f"(global step {step}); parts: { {k: float(v.detach()) for k, v in losses.items()} }. "
                        "Lower palette_learning_rate or check the item texts."
                    )
                optimizer.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                step += 1
                for key, value in losses.items():
                    sums[key] += float(value.detach())
                sums["total"] += float(total.detach())
                bar.set_postfix(loss=f"{float(total.detach()):.4f}")
            with torch.no_grad():
                sim = _offdiag_mean(aspect_similarity(z1.detach()))
            record = {"epoch": epoch, **{k: round(v / steps_per_epoch, 5) for k, v in sums.items()},
                      "aspect_similarity_offdiag": sim}
            self.history.append(record)
            self.logger.info(f"palette tuning {record}")
            if self.resume_path:  # removed by the tokenizer once the palette is cached
                self._save_tuning_point(epoch, step, encoder, decoder, optimizer, generator)


def similar_item_groups(states, lengths, group_size, seed):
    """Items grouped by k-means on their mean-pooled cached encoder states, ``n_items / group_size`` groups.

    Returns a list of index arrays (empty clusters dropped).
    """
    import faiss

    n_items = len(lengths)
    pooled = np.zeros((n_items, states.size(-1)), dtype=np.float32)
    for start in range(0, n_items, 1024):
        chunk = states[start:start + 1024].float()
        mask = (torch.arange(chunk.size(1))[None, :] < torch.as_tensor(lengths[start:start + 1024])[:, None])
        pooled[start:start + len(chunk)] = F.normalize(masked_mean(chunk, mask), dim=-1).numpy()
    n_groups = max(1, n_items // group_size)
    if n_groups == 1:
        return [np.arange(n_items)]
    kmeans = faiss.Kmeans(pooled.shape[1], n_groups, niter=20, seed=seed, verbose=False)
    kmeans.train(pooled)
    labels = kmeans.index.search(pooled, 1)[1][:, 0]
    return [np.flatnonzero(labels == g) for g in range(n_groups) if (labels == g).any()]


def grouped_order(groups, generator):
    """One epoch's item order: the groups in random order, each group's items shuffled and kept together."""
    order = []
    for g in torch.randperm(len(groups), generator=generator).tolist():
        members = groups[g]
        order.append(members[torch.randperm(len(members), generator=generator).numpy()])
    return np.concatenate(order)


def _offdiag_mean(sim):
    h = sim.size(0)
    if h == 1:
        return 0.0
    return round(float(sim[~torch.eye(h, dtype=torch.bool)].mean()), 5)
