"""Residual k-means: level l clusters what levels < l left unexplained (coarse to fine)."""

import numpy as np

from recbole_lamia.quantizer.base import AbstractQuantizer, cap_codebook_size, register_quantizer
from recbole_lamia.quantizer.kmeans import nearest, train_kmeans


@register_quantizer("rq_kmeans")
class ResidualKMeansQuantizer(AbstractQuantizer):
    """``rq_levels`` residual k-means codebooks over the concatenated aspects; codes ``[n, levels]``."""

    LEVEL_OPTIONS = ("rq_levels",)

    def fit(self, embeddings):
        x = embeddings.reshape(len(embeddings), -1).astype(np.float32)
        k = cap_codebook_size(int(self.params["codebook_size"]), len(x), self.logger)
        niter = int(self.params.get("kmeans_iterations", 25))
        self.centroids = []
        residual = x.copy()
        for level in range(int(self.params.get("rq_levels", 3))):
            centroids = train_kmeans(residual, k, self.seed + level, niter).centroids
            self.centroids.append(centroids)
            residual -= centroids[nearest(centroids, residual, 1)[1][:, 0]]
        self.codebook_sizes = [k] * len(self.centroids)
        return self

    def _walk(self, embeddings, n_candidates):
        residual = embeddings.reshape(len(embeddings), -1).astype(np.float32).copy()
        dists, codes = [], []
        for centroids in self.centroids:
            d, c = nearest(centroids, residual, n_candidates)
            dists.append(d)
            codes.append(c)
            residual -= centroids[c[:, 0]]
        return np.stack(dists, 1), np.stack(codes, 1).astype(np.int64)

    def encode(self, embeddings):
        return self._walk(embeddings, 1)[1][:, :, 0]

    def candidates(self, embeddings, n_candidates):
        dists, codes = self._walk(embeddings, n_candidates)
        return codes, dists - dists[:, :, :1]

    def reconstruction_error(self, embeddings, codes):
        x = embeddings.reshape(len(embeddings), -1)
        recon = sum(c[codes[:, level]] for level, c in enumerate(self.centroids))
        return float(((x - recon) ** 2).sum(-1).mean())
