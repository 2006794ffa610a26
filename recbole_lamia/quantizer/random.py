"""Random codes: a control that carries no content at all."""

import numpy as np

from recbole_lamia.quantizer.base import AbstractQuantizer, cap_codebook_size, register_quantizer


@register_quantizer("random")
class RandomQuantizer(AbstractQuantizer):
    """Uniform seeded codes, one level per aspect (or ``random_levels``)."""

    LEVEL_OPTIONS = ("random_levels",)

    def fit(self, embeddings):
        n, h, _ = embeddings.shape
        k = cap_codebook_size(int(self.params["codebook_size"]), n, self.logger)
        self.codebook_sizes = [k] * int(self.params.get("random_levels") or h)
        return self

    def encode(self, embeddings):
        rng = np.random.default_rng(self.seed)
        return np.stack([rng.integers(0, k, len(embeddings)) for k in self.codebook_sizes], axis=1).astype(np.int64)

    def candidates(self, embeddings, n_candidates):
        codes = self.encode(embeddings)
        steps = np.arange(n_candidates)
        alt = (codes[:, :, None] + steps) % np.array(self.codebook_sizes)[None, :, None]
        return alt.astype(np.int64), np.broadcast_to(steps.astype(float), alt.shape).copy()
