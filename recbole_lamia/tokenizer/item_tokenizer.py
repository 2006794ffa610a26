"""The item tokenizer: item texts -> item embeddings -> quantizer -> collision-free semantic IDs.

Both stages are cached on disk (``semantic_id_cache_dir``): the embeddings keyed by the item texts,
the embedder's settings and the encoder; the codes keyed by the embeddings' key and the quantizer's
settings. So LAMIA with ``kmeans`` and with ``rqvae`` share one palette, and a second run recomputes
nothing.
"""

import copy
import functools
import glob
import hashlib
import os
import time
from logging import getLogger

import numpy as np

from recbole_lamia.data.cache import ArrayCache, stable_hash
from recbole_lamia.data.item_text import ItemTextBuilder
from recbole_lamia.quantizer import QUANTIZER_REGISTRY, get_quantizer_class, resolve_collisions
from recbole_lamia.quantizer.base import collision_rate
from recbole_lamia.tokenizer.item_embedder import CONTRASTIVE_NEGATIVES, PaletteEmbedder, SentenceEmbedder
from recbole_lamia.tokenizer.text_encoder import hub_snapshot_folder, resolve_encoder_path
from recbole_lamia.utils.errors import UserInputError

# Every config key the tokenizer reads, with its default (also used to spot typos in user config).
TOKENIZER_DEFAULTS = {
    "item_text_fields": None,
    "item_text_separator": ". ",
    "item_text_ignore_values": ["Unknown"],
    "text_encoder": "all-MiniLM-L6-v2",
    "text_encoder_allow_download": False,
    "max_text_length": 32,
    "embed_batch_size": 256,
    "item_embedding": "palette",
    "palette_size": 16,  # keep in step with properties/LAMIA.yaml
    "palette_dim": 64,
    "palette_tune_layers": 1,
    "palette_epochs": 3,
    "palette_batch_size": 128,
    "palette_learning_rate": 1e-4,
    "use_text_reconstruction": True,
    "use_contrastive": True,
    "use_decorrelation": True,
    "recon_weight": 1.0,
    "contrastive_weight": 1.0,
    "decorrelation_weight": 1.0,
    "contrastive_temperature": 0.1,
    "contrastive_negatives": "random",
    "field_drop_prob": 0.3,
    "token_drop_prob": 0.1,
    "quantizer": "kmeans",
    "codebook_size": 256,
    "collision_handling": "reassign",
    "kmeans_iterations": 25,
    "rq_levels": 3,
    "pq_subspaces": None,
    "random_levels": None,
    "semantic_id_cache_dir": "saved/semantic_ids",
    "tokenizer_seed": None,
}

_EMBEDDERS = {"palette": PaletteEmbedder, "sentence": SentenceEmbedder}
_PALETTE_KEYS = [k for k in TOKENIZER_DEFAULTS if k.startswith(("palette_", "use_", "field_drop", "token_drop"))
                 or k.endswith("_weight") or k == "contrastive_temperature"]
_EMBEDDING_KEYS = ["item_embedding", "text_encoder", "max_text_length"]
_QUANTIZER_KEYS = ["quantizer", "codebook_size", "collision_handling", "kmeans_iterations", "rq_levels",
                   "pq_subspaces", "random_levels"]
_LEVEL_KEYS = ("rq_levels", "pq_subspaces", "random_levels")


def unused_level_keys(quantizer):
    """The level options (``rq_levels``, ``pq_subspaces``, ``random_levels``) that quantizer ``quantizer`` never
    reads, by its ``LEVEL_OPTIONS``; empty for a quantizer that does not declare them or is not registered."""
    used = getattr(QUANTIZER_REGISTRY.get(quantizer), "LEVEL_OPTIONS", None)
    return () if used is None else tuple(k for k in _LEVEL_KEYS if k not in used)


def ignored_tokenizer_keys(params, given, with_quantizer=True):
    """The keys among ``given`` (the ones a user set) that the tokenizer settings ``params`` never read: the
    palette's settings under ``item_embedding: sentence``, and level options the chosen quantizer ignores."""
    ignored = set(_PALETTE_KEYS) | {"contrastive_negatives"} if params["item_embedding"] != "palette" else set()
    if with_quantizer:
        ignored.update(unused_level_keys(params["quantizer"]))
    return sorted(ignored & set(given))


def tokenizer_params(config):
    """Tokenizer settings from a RecBole Config (or a plain dict), defaults filled in, validated."""
    values = dict(config.final_config_dict if hasattr(config, "final_config_dict") else config)
    params = dict(TOKENIZER_DEFAULTS)
    params.update({k: values[k] for k in TOKENIZER_DEFAULTS if values.get(k) is not None})
    params["item_text_fields"] = field_list(params["item_text_fields"])
    # Quantizer-specific keys (e.g. rqvae_epochs) travel with the quantizer, over its own defaults.
    params.update(copy.deepcopy(getattr(QUANTIZER_REGISTRY.get(params["quantizer"]), "DEFAULTS", {})))
    params.update({k: v for k, v in values.items() if str(k).startswith(f"{params['quantizer']}_")})
    seed = params["tokenizer_seed"] if params["tokenizer_seed"] is not None else values.get("seed")
    params["seed"] = 2020 if seed is None else int(seed)
    params["show_progress"] = bool(values.get("show_progress", False))
    validate_tokenizer_params(params)
    return params


def field_list(value):
    """``item_text_fields`` as a list: RecBole keeps a command-line ``--item_text_fields=[title,brand]`` as the text
    ``"[title,brand]"``, and one name may be given alone."""
    if isinstance(value, str):
        return [name.strip().strip("'\"") for name in value.strip().strip("[]").split(",") if name.strip()]
    return value


def text_like_fields(dataset):
    """The item fields that can hold text: token and token-sequence fields, without the item id."""
    from recbole.utils import FeatureType

    if dataset.item_feat is None:
        return []
    return [f for f in dataset.item_feat.columns if f != dataset.iid_field
            and dataset.field2type.get(f) in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ)]


def validate_tokenizer_params(params):
    """Raise ValueError with a clear message for settings that cannot work."""
    size = params["palette_size"]
    if not isinstance(size, int) or not 1 <= size <= 16:
        raise UserInputError(f"palette_size must be an integer in [1, 16], got {size!r}.")
    if not isinstance(params["codebook_size"], int) or params["codebook_size"] < 2:
        raise UserInputError(f"codebook_size must be an integer >= 2, got {params['codebook_size']!r}.")
    if params["item_embedding"] not in _EMBEDDERS:
        raise UserInputError(f"item_embedding must be one of {sorted(_EMBEDDERS)}, got {params['item_embedding']!r}.")
    if params["contrastive_negatives"] not in CONTRASTIVE_NEGATIVES:
        raise UserInputError(f"contrastive_negatives must be one of {list(CONTRASTIVE_NEGATIVES)}, "
                         f"got {params['contrastive_negatives']!r}.")
    if params["palette_dim"] < 1 or params["max_text_length"] < 4:
        raise UserInputError("palette_dim must be >= 1 and max_text_length >= 4.")
    fields = params["item_text_fields"]
    if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields)):
        raise UserInputError(f"item_text_fields must be a list of item field names, got {fields!r}.")
    get_quantizer_class(params["quantizer"]).check_params(params)  # an unknown name raises with the registered ones


# Files of an encoder folder that decide what it computes: weights, config, tokenizer.
_ENCODER_FILE_PATTERNS = ("*.safetensors", "*.bin", "config.json", "tokenizer*.json", "vocab.*", "merges.txt",
                          "special_tokens_map.json", "*.model")


@functools.lru_cache(maxsize=None)
def _file_digest(path, size, mtime_ns, ctime_ns, inode):
    """SHA-256 of a file, memoised on its size, times and inode (the encoder's 90 MB of weights are read once)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _encoder_identity(name_or_path, hub_cache_dir=None):
    """What identifies the encoder in the cache key: its name and a digest of each file that decides its output
    (new weights in the same folder give new semantic IDs). A Hugging Face cache name is read from the snapshot
    it resolves to now, so a newer download of the same name does not reuse IDs built with the old one."""
    path = resolve_encoder_path(name_or_path)
    if not os.path.isdir(path):
        path = hub_snapshot_folder(path, hub_cache_dir) or path
    files = sorted({f for pattern in _ENCODER_FILE_PATTERNS for f in glob.glob(os.path.join(path, pattern))})
    identity = {"encoder": name_or_path}
    for file in files:
        stat = os.stat(file)
        identity[os.path.basename(file)] = _file_digest(file, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                                                        stat.st_ino)
    return identity


def code_problem(codes, n_items, meta):
    """What is wrong with a semantic-ID table for ``n_items`` item indices, or ``None``: its shape, the padding row,
    codes outside ``[0, codebook size)`` of their level, or two items with one ID (every collision strategy
    promises unique IDs)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != n_items or codes.shape[1] < 1:
        return f"shape {list(codes.shape)}, expected [{n_items}, L]"
    if not np.issubdtype(codes.dtype, np.integer):
        return f"dtype {codes.dtype}, expected integers"
    if (codes[0] != -1).any():
        return "row 0 (RecBole's padding item) is not -1"
    real = codes[1:]
    if (real < 0).any():
        return "negative codes"
    sizes = ((meta or {}).get("diagnostics") or {}).get("codebook_sizes") or []
    for level, size in enumerate(sizes[: real.shape[1]]):
        if real[:, level].max(initial=0) >= size:
            return f"level {level} has code {int(real[:, level].max())}, its codebook has {size}"
    if len(real) and collision_rate(real) > 0:
        return f"{len(real) - len(np.unique(real, axis=0))} items share an ID with another item"
    return None


class ItemTokenizer:
    """Runs (or loads from cache) the embedder and quantizer for a RecBole dataset."""

    def __init__(self, params):
        self.params = params
        self.logger = getLogger()
        self.report = {}

    def embedding_key(self, texts):
        p = self.params
        settings = {k: p[k] for k in _EMBEDDING_KEYS}
        if p["item_embedding"] == "palette":
            settings.update({k: p[k] for k in _PALETTE_KEYS})
            if p["contrastive_negatives"] != "random":  # keyed only when set, so older caches stay valid
                settings["contrastive_negatives"] = p["contrastive_negatives"]
            settings["seed"] = p["seed"]
        return stable_hash("embedding-v2", texts, settings, _encoder_identity(p["text_encoder"]))

    def embedding_entry(self, embedding_key):
        """Name of the cache entry that holds the item embeddings for ``embedding_key``."""
        return f"{self.params['item_embedding']}-{embedding_key[:16]}"

    def code_key(self, embedding_key):
        p = self.params
        settings = {k: p[k] for k in _QUANTIZER_KEYS}
        # A level option the quantizer ignores keys as its default, so setting it does not refit the same codes.
        settings.update({k: TOKENIZER_DEFAULTS[k] for k in unused_level_keys(p["quantizer"])})
        settings.update({k: v for k, v in p.items() if k.startswith(f"{p['quantizer']}_")})
        settings["seed"] = p["seed"]
        return stable_hash("codes-v1", embedding_key, settings)

    def _item_texts(self, dataset):
        """``(texts, spans)`` of every item, from ``item_text_fields`` or, unset, the text-like fields."""
        p = self.params
        fields = p["item_text_fields"]
        if not fields:
            fields = text_like_fields(dataset)
            if not fields:
                raise UserInputError(f"dataset {dataset.dataset_name} has no item text: its .item file has no token "
                                     "or token_seq field besides the item id. Set item_text_fields.")
            self.logger.info(f"item_text_fields is not set: reading the item's text from {fields}.")
        builder = ItemTextBuilder(fields, p["item_text_separator"], p["item_text_ignore_values"])
        return builder.build(dataset)

    def embed(self, dataset):
        """Return the item embeddings ``[item_num, h, dim]`` float (row 0 is RecBole's padding item), from the
        cache when it holds them; the quantizer does not run."""
        texts, spans = self._item_texts(dataset)
        cache = ArrayCache(os.path.join(self.params["semantic_id_cache_dir"], dataset.dataset_name))
        emb_key = self.embedding_key(texts)
        emb_name = self.embedding_entry(emb_key)
        tuning_point = os.path.join(cache.directory, f"{emb_name}.tuning.pth")
        embeddings, emb_meta = self._load_or_build(
            cache, emb_name, emb_key, "embeddings", lambda: self._embed(texts, spans, tuning_point),
            f"item {self.params['item_embedding']} embeddings")
        if os.path.exists(tuning_point):
            os.remove(tuning_point)
        self.report = {"embedding": emb_meta, "embedding_shape": list(embeddings.shape)}
        return embeddings

    def tokenize(self, dataset):
        """Return semantic IDs ``[item_num, L]`` int64; row 0 (RecBole's padding item) is -1."""
        p = self.params
        texts, spans = self._item_texts(dataset)
        cache = ArrayCache(os.path.join(p["semantic_id_cache_dir"], dataset.dataset_name))

        emb_key = self.embedding_key(texts)
        emb_name, code_key = self.embedding_entry(emb_key), self.code_key(emb_key)
        code_name = f"codes-{p['quantizer']}-{code_key[:16]}"
        cached_codes = cache.load(code_name, code_key)
        if cached_codes is not None:
            problem = code_problem(cached_codes[0]["codes"], dataset.item_num, cached_codes[1])
            if problem:
                self.logger.warning(f"Cached semantic IDs {code_name} are not usable ({problem}); rebuilding them.")
                cached_codes = None
        if cached_codes is not None:
            # The embeddings are only an input of the quantizer: with the codes cached, their metadata
            # (fit time, tuning history) is enough, and the array (50 MB for a 16-aspect palette) is not read.
            codes, code_meta = cached_codes[0]["codes"], dict(cached_codes[1], cached=True)
            self.logger.info(f"Loaded semantic IDs ({p['quantizer']}) {codes.shape} from cache.")
            emb_entry = cache.load_metadata(emb_name, emb_key)
            emb_shape, emb_meta = (emb_entry[0].get("embeddings"), emb_entry[1]) if emb_entry else (None, {})
            emb_meta = dict(emb_meta, cached=True)
        else:
            tuning_point = os.path.join(cache.directory, f"{emb_name}.tuning.pth")  # an interrupted tuning's state
            embeddings, emb_meta = self._load_or_build(
                cache, emb_name, emb_key, "embeddings",
                lambda: self._embed(texts, spans, tuning_point), f"item {p['item_embedding']} embeddings")
            if os.path.exists(tuning_point):  # the palette is cached now
                os.remove(tuning_point)
            emb_shape = list(embeddings.shape)
            # The codes entry was looked up above and missed: build it without a second lookup.
            codes, code_meta = self._build_and_store(cache, code_name, code_key, "codes",
                                                     lambda: self._quantize(embeddings))
        problem = code_problem(codes, dataset.item_num, code_meta)
        if problem:
            raise RuntimeError(f"The quantizer produced unusable semantic IDs: {problem}.")
        # Reported from the codes in use, not copied from when they were made.
        code_meta = dict(code_meta, collisions=dict(code_meta.get("collisions") or {},
                                                    collision_rate_after=collision_rate(codes[1:])))
        self.report = {"embedding": emb_meta, "codes": code_meta, "embedding_shape": emb_shape}
        self._log_report()
        return codes

    def _load_or_build(self, cache, name, key, array_name, build, label):
        """``(array, metadata)`` from the cache entry ``name``, or from ``build()`` (then stored)."""
        loaded = cache.load(name, key)
        if loaded is not None:
            self.logger.info(f"Loaded {label} {loaded[0][array_name].shape} from cache.")
            return loaded[0][array_name], dict(loaded[1], cached=True)
        return self._build_and_store(cache, name, key, array_name, build)

    def _build_and_store(self, cache, name, key, array_name, build):
        """``(array, metadata)`` from ``build()``, timed and stored in the cache entry ``name``."""
        start = time.time()
        array, meta = build()
        meta = dict(meta, seconds=round(time.time() - start, 2))
        cache.save(name, key, {array_name: array}, meta)
        return array, dict(meta, cached=False)

    def _embed(self, texts, spans, resume_path=None):
        """Embed the items; a palette's tuning saves a resume point per epoch at ``resume_path``."""
        embedder = _EMBEDDERS[self.params["item_embedding"]](self.params)
        if hasattr(embedder, "resume_path"):
            embedder.resume_path = resume_path
        embeddings = embedder.embed(texts, spans)
        return embeddings, {"stats": embedder.stats, "history": getattr(embedder, "history", []),
                            "n_items": len(texts) - 1}

    def _quantize(self, embeddings):
        p = self.params
        item_embeddings = embeddings[1:]  # row 0 is RecBole's padding item
        quantizer = get_quantizer_class(p["quantizer"])(p)
        raw = quantizer.fit_encode(item_embeddings)
        diagnostics = quantizer.diagnostics(item_embeddings, raw)
        unique, collisions = resolve_collisions(raw, p["collision_handling"], quantizer, item_embeddings)
        codes = np.concatenate([np.full((1, unique.shape[1]), -1, dtype=np.int64), unique], axis=0)
        return codes, {"diagnostics": diagnostics, "collisions": collisions, "history": quantizer.history,
                       "code_usage_per_level_after": [int(len(np.unique(unique[:, j])))
                                                      for j in range(unique.shape[1])]}

    def _log_report(self):
        codes = self.report["codes"]
        diag, coll = codes.get("diagnostics", {}), codes.get("collisions", {})
        self.logger.info(
            f"Semantic IDs: quantizer={diag.get('quantizer')} codebook_sizes={diag.get('codebook_sizes')} "
            f"code usage per level={diag.get('code_usage_per_level')} "
            f"mean level NMI={diag.get('mean_level_nmi')} "
            f"collision rate before={coll.get('collision_rate_before')} after={coll.get('collision_rate_after')} "
            f"({coll.get('collision_handling')}, {coll.get('items_moved')} items moved)"
        )
