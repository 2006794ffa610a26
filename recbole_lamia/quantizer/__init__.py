"""Quantizers turn item embeddings into semantic IDs. Importing this package registers the built-in ones."""

from recbole_lamia.quantizer import kmeans, multiscale_kmeans, pq, random, rq_kmeans, rqvae  # noqa: F401  (registration)
from recbole_lamia.quantizer.base import (
    QUANTIZER_REGISTRY,
    AbstractQuantizer,
    cap_codebook_size,
    collision_rate,
    get_quantizer_class,
    register_quantizer,
)
from recbole_lamia.quantizer.collision import resolve_collisions

__all__ = [
    "QUANTIZER_REGISTRY",
    "AbstractQuantizer",
    "cap_codebook_size",
    "collision_rate",
    "get_quantizer_class",
    "register_quantizer",
    "resolve_collisions",
]
