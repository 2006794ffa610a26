"""k-means on each aspect separately (LAMIA): an item's ID is h parallel cluster indices."""

import faiss
import numpy as np

from recbole_lamia.quantizer.base import AbstractQuantizer, cap_codebook_size, register_quantizer


def train_kmeans(x, k, seed, niter):
    """A seeded faiss k-means on ``x`` ``[n, d]`` float32."""
    kmeans = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, spherical=False,
                          max_points_per_centroid=100000)
    kmeans.train(np.ascontiguousarray(x, dtype=np.float32))
    return kmeans


def nearest(centroids, x, n):
    """``(distances, indices)`` of the ``n`` nearest centroids, exact and deterministic."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    dist = (x * x).sum(1, keepdims=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    n = min(n, centroids.shape[0])
    index = np.argsort(dist, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(dist, index, axis=1), index


@register_quantizer("kmeans")
class KMeansQuantizer(AbstractQuantizer):
    """One k-means codebook of ``codebook_size`` codes per aspect; codes ``[n, h]``."""

    LEVEL_OPTIONS = ()

    def fit(self, embeddings):
        n, h, _ = embeddings.shape
        k = cap_codebook_size(int(self.params["codebook_size"]), n, self.logger)
        niter = int(self.params.get("kmeans_iterations", 25))
        self.centroids = [train_kmeans(embeddings[:, a], k, self.seed + a, niter).centroids for a in range(h)]
        self.codebook_sizes = [k] * h
        return self

    def encode(self, embeddings):
        return np.stack([nearest(c, embeddings[:, a], 1)[1][:, 0] for a, c in enumerate(self.centroids)],
                        axis=1).astype(np.int64)

    def candidates(self, embeddings, n_candidates):
        dists, codes = zip(*(nearest(c, embeddings[:, a], n_candidates) for a, c in enumerate(self.centroids)))
        dists, codes = np.stack(dists, 1), np.stack(codes, 1)
        return codes.astype(np.int64), dists - dists[:, :, :1]

    def reconstruction_error(self, embeddings, codes):
        recon = np.stack([c[codes[:, a]] for a, c in enumerate(self.centroids)], axis=1)
        return float(((embeddings - recon) ** 2).sum(-1).mean())
