"""The RQ-VAE quantizer (TIGER's tokenizer) on small synthetic embeddings."""

import math

import numpy as np
import pytest

from recbole_lamia.quantizer import collision_rate, get_quantizer_class, resolve_collisions
from recbole_lamia.quantizer.rqvae import RQVAEQuantizer

N_ITEMS, DIM, CODEBOOK, LEVELS = 300, 32, 8, 3


def _clustered_embeddings(n_centres=40, noise=0.3, seed=0):
    """``[N_ITEMS, 1, DIM]`` embeddings around ``n_centres`` centres, so that there is structure to quantize."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, DIM))
    x = centres[rng.integers(n_centres, size=N_ITEMS)] + noise * rng.normal(size=(N_ITEMS, DIM))
    return x.astype(np.float32)[:, None, :]


def _params(**overrides):
    params = {"codebook_size": CODEBOOK, "rq_levels": LEVELS, "seed": 3, "kmeans_iterations": 10,
              "rqvae_hidden_dims": [32, 16], "rqvae_latent_dim": 8, "rqvae_epochs": 5, "rqvae_batch_size": 64}
    params.update(overrides)
    return params


@pytest.fixture(scope="module")
def embeddings():
    return _clustered_embeddings()


@pytest.fixture(scope="module")
def fitted(embeddings):
    quantizer = RQVAEQuantizer(_params())
    return quantizer, quantizer.fit_encode(embeddings)


def test_registered_under_rqvae():
    assert get_quantizer_class("rqvae") is RQVAEQuantizer


def test_codes_have_one_column_per_level_within_the_codebook(fitted):
    quantizer, codes = fitted
    assert codes.shape == (N_ITEMS, LEVELS) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < CODEBOOK
    assert quantizer.codebook_sizes == [CODEBOOK] * LEVELS


def test_history_records_losses_usage_and_dead_codes_per_epoch(fitted):
    quantizer, _ = fitted
    assert [h["epoch"] for h in quantizer.history] == [1, 2, 3, 4, 5]
    for record in quantizer.history:
        assert math.isfinite(record["reconstruction_loss"]) and math.isfinite(record["quantization_loss"])
        assert len(record["code_usage_per_level"]) == LEVELS
        assert [u + d for u, d in zip(record["code_usage_per_level"], record["dead_codes_per_level"])] == \
            [CODEBOOK] * LEVELS


def test_reconstruction_error_and_diagnostics(fitted, embeddings):
    quantizer, codes = fitted
    error = quantizer.reconstruction_error(embeddings, codes)
    assert math.isfinite(error) and error > 0
    assert quantizer.decode(codes).shape == (N_ITEMS, DIM)
    diagnostics = quantizer.diagnostics(embeddings, codes)
    assert diagnostics["quantizer"] == "rqvae" and diagnostics["reconstruction_error"] == round(error, 6)


def test_training_reduces_the_reconstruction_loss(embeddings):
    quantizer = RQVAEQuantizer(_params(rqvae_epochs=25))
    quantizer.fit(embeddings)
    assert quantizer.history[-1]["reconstruction_loss"] < 0.9 * quantizer.history[0]["reconstruction_loss"]


def test_same_seed_gives_the_same_codes(embeddings, fitted):
    _, codes = fitted
    again = RQVAEQuantizer(_params()).fit_encode(embeddings)
    np.testing.assert_array_equal(codes, again)
    other_seed = RQVAEQuantizer(_params(seed=4)).fit_encode(embeddings)
    assert not np.array_equal(codes, other_seed)


def test_dead_code_reset_revives_unused_codes():
    # Four tight clusters leave most of 16 codes unused once the encoder has moved away from the init.
    embeddings = _clustered_embeddings(n_centres=4, noise=0.05)
    kept = RQVAEQuantizer(_params(codebook_size=16, rqvae_epochs=8, rqvae_reset_dead_codes=False))
    kept_again = RQVAEQuantizer(_params(codebook_size=16, rqvae_epochs=8, rqvae_reset_dead_codes=False))
    reset = RQVAEQuantizer(_params(codebook_size=16, rqvae_epochs=8, rqvae_reset_dead_codes=True))
    np.testing.assert_array_equal(kept.fit_encode(embeddings), kept_again.fit_encode(embeddings))
    reset.fit(embeddings)
    assert kept.history == kept_again.history
    assert sum(reset.history[-1]["dead_codes_per_level"]) < sum(kept.history[-1]["dead_codes_per_level"])


def test_extra_token_makes_ids_unique(fitted, embeddings):
    quantizer, codes = fitted
    unique, report = resolve_collisions(codes, "extra_token", quantizer, embeddings)
    assert unique.shape == (N_ITEMS, LEVELS + 1)
    np.testing.assert_array_equal(unique[:, :LEVELS], codes)
    assert collision_rate(unique) == 0.0 and report["collision_rate_after"] == 0.0


def test_candidates_rank_codes_so_reassign_works(embeddings):
    # A larger codebook leaves room to move every duplicate to a free code one level away.
    quantizer = RQVAEQuantizer(_params(codebook_size=16))
    codes = quantizer.fit_encode(embeddings)
    ranked, costs = quantizer.candidates(embeddings, 4)
    assert ranked.shape == costs.shape == (N_ITEMS, LEVELS, 4)
    np.testing.assert_array_equal(ranked[:, :, 0], codes)
    assert (costs[:, :, 0] == 0).all() and (np.diff(costs, axis=2) >= -1e-5).all()
    unique, report = resolve_collisions(codes, "reassign", quantizer, embeddings)
    assert report["collision_handling"] == "reassign" and collision_rate(unique) == 0.0
    assert unique.shape == codes.shape and unique.max() < 16


def test_nan_embeddings_raise_a_clear_error(embeddings):
    broken = embeddings.copy()
    broken[5, 0, 3] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        RQVAEQuantizer(_params()).fit(broken)


def test_divergence_raises_naming_the_epoch(embeddings):
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 1\b.*rqvae_learning_rate"):
        RQVAEQuantizer(_params(rqvae_learning_rate=1e10)).fit(embeddings)


def test_codebook_larger_than_the_catalogue_is_capped(embeddings):
    quantizer = RQVAEQuantizer(_params(codebook_size=512, rqvae_epochs=1))
    codes = quantizer.fit_encode(embeddings[:40])
    assert quantizer.codebook_sizes == [40] * LEVELS and codes.max() < 40
