"""Product quantization (and OPQ) with faiss over the concatenated aspects."""

import math

import faiss
import numpy as np

from recbole_lamia.quantizer.base import AbstractQuantizer, cap_codebook_size, register_quantizer
from recbole_lamia.utils.errors import UserInputError


@register_quantizer("pq")
class ProductQuantizer(AbstractQuantizer):
    """faiss PQ with ``pq_subspaces`` sub-vectors (default: the palette size h, else 4); codes ``[n, M]``.

    The codebook size per sub-vector is rounded down to a power of two (faiss uses ``nbits``).
    """

    LEVEL_OPTIONS = ("pq_subspaces",)
    use_rotation = False

    def _subspaces(self, h, dim):
        m = int(self.params.get("pq_subspaces") or (h if h > 1 else 4))
        if dim % m:
            raise UserInputError(f"pq_subspaces={m} must divide the embedding size {dim}.")
        return m

    def fit(self, embeddings):
        n, h, d = embeddings.shape
        x = np.ascontiguousarray(embeddings.reshape(n, -1), dtype=np.float32)
        k = cap_codebook_size(int(self.params["codebook_size"]), n, self.logger)
        nbits = int(math.floor(math.log2(k)))
        m = self._subspaces(h, x.shape[1])
        faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
        self.rotation = None
        if self.use_rotation:
            self.rotation = faiss.OPQMatrix(x.shape[1], m)
            # OPQ's inner PQ must use our code size (its default, 256 codes, warns on small data).
            self._rotation_pq = faiss.ProductQuantizer(x.shape[1], m, nbits)
            self.rotation.pq = self._rotation_pq
            self.rotation.niter = int(self.params.get("kmeans_iterations", 25))
            self.rotation.train(x)
            x = self.rotation.apply_py(x)
        self.pq = faiss.ProductQuantizer(x.shape[1], m, nbits)
        self.pq.cp.seed = self.seed
        self.pq.train(x)
        self.centroids = faiss.vector_to_array(self.pq.centroids).reshape(m, self.pq.ksub, self.pq.dsub)
        self.codebook_sizes = [int(self.pq.ksub)] * m
        return self

    def _distances(self, embeddings):
        x = np.ascontiguousarray(embeddings.reshape(len(embeddings), -1), dtype=np.float32)
        if self.rotation is not None:
            x = self.rotation.apply_py(x)
        sub = x.reshape(len(x), self.centroids.shape[0], -1)  # [n, M, dsub]
        # |a - c|^2 = |a|^2 - 2 a.c + |c|^2: [n, M, ksub] without the [n, M, ksub, dsub] difference tensor
        # (35 GB for 12k items, 16 sub-vectors and 2048 codes).
        cross = np.einsum("nmd,mkd->nmk", sub, self.centroids)
        dist = (sub ** 2).sum(-1)[:, :, None] - 2 * cross + (self.centroids ** 2).sum(-1)[None]
        return np.maximum(dist, 0)

    def encode(self, embeddings):
        return self._distances(embeddings).argmin(-1).astype(np.int64)

    def candidates(self, embeddings, n_candidates):
        dist = self._distances(embeddings)
        codes = np.argsort(dist, axis=-1, kind="stable")[:, :, :n_candidates]
        costs = np.take_along_axis(dist, codes, axis=-1)
        return codes.astype(np.int64), costs - costs[:, :, :1]

    def reconstruction_error(self, embeddings, codes):
        dist = self._distances(embeddings)
        return float(np.take_along_axis(dist, codes[:, :, None], axis=-1).sum((1, 2)).mean())


@register_quantizer("opq")
class OptimizedProductQuantizer(ProductQuantizer):
    """PQ after a learned faiss OPQ rotation."""

    use_rotation = True
