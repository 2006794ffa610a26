"""k-means on each aspect at a fine and at coarser granularities: an item's ID is h fine codes, then h codes
per coarse size.

Why: with 2048 codes per aspect a code stands for about 6 amazon-beauty items, and the whole-item loss
shapes token combinations almost item by item, so items that are rarely or never a training target rank
near random (``results/README.md``, cold-start probe). A coarse code is shared by many items, so such an
item still has tokens that were trained on its neighbours; the fine codes keep items apart.
"""

import numpy as np

from recbole_lamia.quantizer.base import cap_codebook_size, register_quantizer
from recbole_lamia.quantizer.kmeans import KMeansQuantizer, nearest, train_kmeans
from recbole_lamia.utils.errors import UserInputError

COARSE_SEED_STRIDE = 100003  # coarse k-means seeds differ from the fine ones, which match quantizer: kmeans


@register_quantizer("multiscale_kmeans")
class MultiscaleKMeansQuantizer(KMeansQuantizer):
    """Per aspect, ``codebook_size`` fine codes and, for each size in ``multiscale_kmeans_coarse_sizes``
    (default ``auto``: one size, ``codebook_size // 8``), that many coarse codes; codes
    ``[n, h * (1 + number of coarse sizes)]``.

    Before collision handling the fine codes are exactly those of ``quantizer: kmeans`` (same seeds).
    Collisions are resolved on the fine levels: coarse levels offer no ranked alternative, and the last-resort
    search of ``reassign_collisions`` tries the fine levels, which come first, before any coarse one.
    """

    # "auto": one coarse size, an eighth of the fine codebook (256 for amazon-beauty's 2048; 32 for the default
    # 256), taken after the fine size is capped to the number of items, so the defaults run on every dataset.
    # The cache key holds "auto" with codebook_size, and the item texts fix the number of items.
    DEFAULTS = {"multiscale_kmeans_coarse_sizes": "auto"}
    AUTO_FRACTION = 8

    @classmethod
    def check_params(cls, params):
        sizes = params.get("multiscale_kmeans_coarse_sizes", cls.DEFAULTS["multiscale_kmeans_coarse_sizes"])
        if sizes == "auto":
            return "auto"
        if isinstance(sizes, int) and not isinstance(sizes, bool):
            sizes = [sizes]
        if not isinstance(sizes, (list, tuple)) or not sizes or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 2 for k in sizes):
            raise UserInputError(f"multiscale_kmeans_coarse_sizes must be auto or a non-empty list of integers >= 2, "
                                 f"got {params.get('multiscale_kmeans_coarse_sizes')!r}.")
        if max(sizes) >= int(params["codebook_size"]):
            raise UserInputError(f"multiscale_kmeans_coarse_sizes {list(sizes)} must be smaller than codebook_size "
                                 f"{params['codebook_size']}.")
        return list(sizes)

    def _coarse_sizes(self, n):
        """The coarse sizes, checked, and each below the fine size as capped to the ``n`` items."""
        sizes = self.check_params(self.params)
        fine = cap_codebook_size(int(self.params["codebook_size"]), n, self.logger)
        if sizes == "auto":  # at least 2 codes; none when the fine codebook itself has only 2
            return [max(2, fine // self.AUTO_FRACTION)] if fine > 2 else []
        if max(sizes) >= fine:
            raise UserInputError(f"multiscale_kmeans_coarse_sizes {sizes} must be smaller than the fine codebook "
                                 f"size {fine} (codebook_size {self.params['codebook_size']}, {n} items).")
        return sizes

    def fit(self, embeddings):
        n, h, _ = embeddings.shape
        coarse = self._coarse_sizes(n)
        super().fit(embeddings)
        niter = int(self.params.get("kmeans_iterations", 25))
        self.coarse_centroids = [
            [train_kmeans(embeddings[:, a], k, self.seed + COARSE_SEED_STRIDE * (s + 1) + a, niter).centroids
             for a in range(h)]
            for s, k in enumerate(coarse)]
        self.codebook_sizes = [self.codebook_sizes[0]] * h + [k for k in coarse for _ in range(h)]
        return self

    def _coarse_codes(self, embeddings):
        return [nearest(c, embeddings[:, a], 1)[1][:, 0] for scale in self.coarse_centroids
                for a, c in enumerate(scale)]

    def encode(self, embeddings):
        fine = super().encode(embeddings)
        if not self.coarse_centroids:
            return fine
        return np.concatenate([fine, np.stack(self._coarse_codes(embeddings), axis=1).astype(np.int64)], axis=1)

    def candidates(self, embeddings, n_candidates):
        codes, costs = super().candidates(embeddings, n_candidates)
        if not self.coarse_centroids:
            return codes, costs
        coarse = np.stack(self._coarse_codes(embeddings), axis=1).astype(np.int64)
        # A coarse level offers only its own code: moving it would not tell items apart any better.
        coarse_codes = np.repeat(coarse[:, :, None], codes.shape[2], axis=2)
        coarse_costs = np.full(coarse_codes.shape, np.inf)
        coarse_costs[:, :, 0] = 0.0
        return np.concatenate([codes, coarse_codes], axis=1), np.concatenate([costs, coarse_costs], axis=1)

    def reconstruction_error(self, embeddings, codes):
        """Error of the fine codes (the coarse ones reconstruct less by design)."""
        return super().reconstruction_error(embeddings, codes[:, : len(self.centroids)])
