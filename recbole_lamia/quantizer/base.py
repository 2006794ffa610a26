"""Quantizer base class and registry.

A quantizer is fitted on item embeddings ``[n, h, d]`` (h aspects; h = 1 for one embedding per item)
and returns integer codes ``[n, L]``. Register one with ``@register_quantizer("name")`` and select it
with ``quantizer: name`` in config.
"""

from logging import getLogger

import numpy as np

from recbole_lamia.utils.errors import UserInputError

QUANTIZER_REGISTRY = {}


def register_quantizer(name):
    """Class decorator: make ``quantizer: <name>`` in config build this class."""

    def decorator(cls):
        if not issubclass(cls, AbstractQuantizer):
            raise TypeError(f"{cls.__name__} must subclass AbstractQuantizer to be registered.")
        QUANTIZER_REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorator


def get_quantizer_class(name):
    """Return the registered quantizer class ``name``; the error lists the registered ones."""
    if name not in QUANTIZER_REGISTRY:
        raise UserInputError(f"Unknown quantizer '{name}'. Registered quantizers: {sorted(QUANTIZER_REGISTRY)}.")
    return QUANTIZER_REGISTRY[name]


def cap_codebook_size(codebook_size, n_items, logger=None):
    """``codebook_size`` limited to ``n_items``, with a warning when it had to be capped."""
    if codebook_size < 2:
        raise UserInputError(f"codebook_size must be >= 2, got {codebook_size}.")
    if codebook_size > n_items:
        (logger or getLogger()).warning(
            f"codebook_size {codebook_size} is larger than the number of items ({n_items}); capped to {n_items}."
        )
        return max(2, n_items)
    return codebook_size


class AbstractQuantizer:
    """Base class of quantizers.

    Subclasses implement ``fit`` and ``encode``. Those that can rank alternative codes implement
    ``candidates``, which lets collisions be resolved by reassignment instead of an extra token.

    Args:
        params (dict): the tokenizer's config values (``codebook_size``, ``seed``, ...).
    """

    name = "abstract"
    # Defaults of this quantizer's own ``<name>_...`` keys: they enter the tokenizer's params, and so the
    # semantic-ID cache key, so that changing a default does not load codes made with the old one.
    DEFAULTS = {}
    # Which of the tokenizer's level options (``rq_levels``, ``pq_subspaces``, ``random_levels``) this quantizer
    # reads. None (the default, for your own quantizers): all of them may, so all of them key its cached codes.
    # A tuple: the others are ignored, do not key the codes, and are reported as ignored when a user sets them.
    LEVEL_OPTIONS = None

    def __init__(self, params):
        self.params = params
        self.seed = int(params.get("seed", 2020))
        self.logger = getLogger()
        self.codebook_sizes = []  # codes per level, filled by fit
        self.history = []  # per-iteration training records, where the quantizer trains

    @classmethod
    def check_params(cls, params):
        """Raise ValueError for this quantizer's settings that cannot work; called when the tokenizer's settings
        are read, before any item is embedded (a palette can take minutes)."""

    def fit(self, embeddings):
        """Fit on ``embeddings`` ``[n, h, d]`` float32; return self."""
        raise NotImplementedError

    def encode(self, embeddings):
        """Return codes ``[n, L]`` int64 with ``0 <= codes[:, l] < codebook_sizes[l]``."""
        raise NotImplementedError

    def candidates(self, embeddings, n_candidates):
        """Ranked alternative codes per level, ``(codes [n, L, C], costs [n, L, C])``, or None.

        ``codes[:, :, 0]`` is the assigned code; ``costs`` is the extra distortion of each alternative.
        """
        return None

    def reconstruction_error(self, embeddings, codes):
        """Mean squared reconstruction error of ``embeddings`` from ``codes``, or None if undefined."""
        return None

    def fit_encode(self, embeddings):
        return self.fit(embeddings).encode(embeddings)

    def diagnostics(self, embeddings, codes):
        """Code usage per level, collision rate, level redundancy and reconstruction error (JSON-able)."""
        usage = [int(len(np.unique(codes[:, level]))) for level in range(codes.shape[1])]
        error = self.reconstruction_error(embeddings, codes)
        return {
            "quantizer": self.name,
            "codebook_sizes": [int(k) for k in self.codebook_sizes],
            "code_usage_per_level": usage,
            "code_usage_ratio_per_level": [round(u / k, 4) for u, k in zip(usage, self.codebook_sizes)],
            "collision_rate": collision_rate(codes),
            "mean_level_nmi": mean_level_nmi(codes),
            "reconstruction_error": None if error is None else round(float(error), 6),
        }


def collision_rate(codes):
    """Share of items whose full code is shared with an earlier item."""
    if len(codes) == 0:
        return 0.0
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    return round(1.0 - len(np.unique(inverse)) / len(codes), 6)


def _entropy(labels):
    _, counts = np.unique(labels, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_information(a, b):
    """NMI (arithmetic normalisation) of two code columns: 0 = independent, 1 = the same partition."""
    h_a, h_b = _entropy(a), _entropy(b)
    if h_a + h_b == 0:
        return 1.0
    mutual = h_a + h_b - _entropy(np.stack([a, b], axis=1))
    return 2.0 * mutual / (h_a + h_b)


def mean_level_nmi(codes):
    """Mean NMI over pairs of levels: how much the levels repeat each other (None for one level).

    Parallel aspects should carry different information, so lower is better. Finite-sample bias puts even
    independent levels well above 0 when K^2 is not small against n (0.32 for K = 256 codes and
    n = 12,101 items), so compare values at the same K and n.
    """
    levels = codes.shape[1]
    if levels < 2 or len(codes) == 0:
        return None
    pairs = [normalized_mutual_information(codes[:, i], codes[:, j])
             for i in range(levels) for j in range(i + 1, levels)]
    return round(float(np.mean(pairs)), 4)
