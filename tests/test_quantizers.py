"""Every registered quantizer on synthetic embeddings, collision handling and the registry."""

import numpy as np
import pytest

from recbole_lamia.quantizer import (
    QUANTIZER_REGISTRY,
    AbstractQuantizer,
    cap_codebook_size,
    get_quantizer_class,
    register_quantizer,
    resolve_collisions,
)
from recbole_lamia.quantizer.collision import add_disambiguation_token

FAST = {"codebook_size": 8, "seed": 3, "kmeans_iterations": 10, "rqvae_epochs": 3, "rqvae_batch_size": 128,
        "multiscale_kmeans_coarse_sizes": [3]}


def _embeddings(n=300, h=4, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, h, d)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(QUANTIZER_REGISTRY))
def test_quantizer_shape_range_determinism_and_unique_ids(name):
    x = _embeddings()
    quantizer = get_quantizer_class(name)(dict(FAST))
    codes = quantizer.fit_encode(x)
    assert codes.ndim == 2 and len(codes) == len(x) and codes.dtype == np.int64
    assert (codes >= 0).all() and (codes < np.array(quantizer.codebook_sizes)).all()
    again = get_quantizer_class(name)(dict(FAST)).fit_encode(x)
    assert np.array_equal(codes, again)
    unique, report = resolve_collisions(codes, "reassign", quantizer, x)
    assert len(np.unique(unique, axis=0)) == len(x)
    assert report["collision_rate_after"] == 0.0
    diagnostics = quantizer.diagnostics(x, codes)
    assert len(diagnostics["code_usage_per_level"]) == codes.shape[1]


def test_extra_token_numbers_items_sharing_a_code_in_item_order():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2]])
    assert add_disambiguation_token(codes)[:, 2].tolist() == [0, 1, 0, 2]


def test_reassign_keeps_first_owner_and_moves_to_nearest_free_code():
    # items 0 and 1 collide; moving item 1's second aspect is cheaper than moving its first
    x = np.array([[[0.0], [0.0]], [[0.0], [0.1]], [[1.0], [1.0]]], dtype=np.float32)
    quantizer = get_quantizer_class("kmeans")({"codebook_size": 2, "seed": 0})
    codes = quantizer.fit_encode(x)
    assert codes[0].tolist() == codes[1].tolist()
    unique, report = resolve_collisions(codes, "reassign", quantizer, x)
    assert report["collision_handling"] == "reassign" and report["items_moved"] == 1
    assert unique[0].tolist() == codes[0].tolist()
    assert unique[1].tolist() == [codes[0][0], codes[2][1]]


def test_unknown_quantizer_lists_registered():
    with pytest.raises(ValueError, match="Registered quantizers: .*kmeans"):
        get_quantizer_class("nope")


def test_codebook_size_is_capped_with_warning(caplog):
    assert cap_codebook_size(256, 40) == 40
    assert "capped to 40" in caplog.text
    with pytest.raises(ValueError):
        cap_codebook_size(1, 40)


def test_registering_requires_the_base_class():
    with pytest.raises(TypeError):
        register_quantizer("bad")(object)


def test_outside_quantizer_runs_end_to_end(tiny_data_path, tiny_bert_path, tmp_path):
    """A quantizer defined here, outside the package, drives the whole LAMIA pipeline."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model

    from tests.conftest import TINY_DATASET, tiny_config

    @register_quantizer("sign_bits")
    class SignBitQuantizer(AbstractQuantizer):
        """Code = sign pattern of the first ``sign_bits_count`` dimensions of each aspect."""

        def fit(self, embeddings):
            self.bits = int(self.params.get("sign_bits_count", 3))
            self.codebook_sizes = [2 ** self.bits] * embeddings.shape[1]
            return self

        def encode(self, embeddings):
            signs = (embeddings[:, :, : self.bits] > 0).astype(np.int64)
            return (signs * (2 ** np.arange(self.bits))).sum(-1)

    try:
        config = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=tiny_config(
            tiny_data_path, tiny_bert_path, tmp_path, quantizer="sign_bits", sign_bits_count=2))
        dataset = create_dataset(config)
        assert dataset.semantic_id_report["codes"]["diagnostics"]["quantizer"] == "sign_bits"
        ids = dataset.item_semantic_ids[1:].numpy()
        assert len(np.unique(ids, axis=0)) == len(ids)
        train, valid, test = data_preparation(config, dataset)
        trainer = Trainer(config, get_model("LAMIA")(config, train._dataset))
        trainer.fit(train, valid, saved=False, show_progress=False)
        result = trainer.evaluate(test, load_best_model=False, show_progress=False)
        assert np.isfinite(result["ndcg@10"])
    finally:
        QUANTIZER_REGISTRY.pop("sign_bits", None)


def test_mean_level_nmi_separates_repeated_from_independent_levels():
    from recbole_lamia.quantizer.base import mean_level_nmi, normalized_mutual_information

    rng = np.random.default_rng(0)
    a = rng.integers(0, 8, size=5000)
    assert normalized_mutual_information(a, a) == pytest.approx(1.0)
    assert normalized_mutual_information(a, (a + 3) % 8) == pytest.approx(1.0)  # relabelled, same partition
    independent = np.stack([a, rng.integers(0, 8, size=5000)], axis=1)
    assert mean_level_nmi(independent) < 0.01
    repeated = np.stack([a, a, rng.integers(0, 8, size=5000)], axis=1)
    assert mean_level_nmi(repeated) == pytest.approx((1.0 + 2 * mean_level_nmi(independent)) / 3, abs=0.01)
    assert mean_level_nmi(a[:, None]) is None


@pytest.mark.parametrize("name", ["pq", "opq"])
def test_product_quantizer_codes_are_the_nearest_centroids(name):
    x = _embeddings(n=400, h=2, d=8)
    quantizer = get_quantizer_class(name)(dict(FAST, pq_subspaces=4))
    codes = quantizer.fit_encode(x)
    flat = x.reshape(len(x), -1)
    if quantizer.rotation is not None:
        flat = quantizer.rotation.apply_py(flat)
    sub = flat.reshape(len(x), 4, -1)
    brute_force = ((sub[:, :, None, :] - quantizer.centroids[None]) ** 2).sum(-1).argmin(-1)
    assert np.array_equal(codes, brute_force)


def test_multiscale_kmeans_adds_coarse_levels_and_resolves_collisions_on_the_fine_ones():
    from recbole_lamia.quantizer.kmeans import nearest

    x = _embeddings(n=400, h=3, d=4)  # 8 fine codes per aspect, 3 aspects: many items share a full fine ID
    params = dict(FAST, multiscale_kmeans_coarse_sizes=[2, 4])
    quantizer = get_quantizer_class("multiscale_kmeans")(params)
    codes = quantizer.fit_encode(x)
    assert codes.shape == (400, 9) and quantizer.codebook_sizes == [8] * 3 + [2] * 3 + [4] * 3
    fine = get_quantizer_class("kmeans")(params).fit_encode(x)
    assert np.array_equal(codes[:, :3], fine)  # the fine levels are quantizer: kmeans's codes
    for scale, size in enumerate((2, 4)):
        for a in range(3):
            centroids = quantizer.coarse_centroids[scale][a]
            assert centroids.shape == (size, 4)
            assert np.array_equal(codes[:, 3 * (scale + 1) + a], nearest(centroids, x[:, a], 1)[1][:, 0])
    unique, report = resolve_collisions(codes, "reassign", quantizer, x)
    assert report["collision_rate_before"] > 0 and report["collision_rate_after"] == 0.0
    assert np.array_equal(unique[:, 3:], codes[:, 3:])  # only fine codes moved
    for bad in ([], [1], [8], "many"):
        with pytest.raises(ValueError, match="coarse_sizes"):
            get_quantizer_class("multiscale_kmeans")(dict(FAST, multiscale_kmeans_coarse_sizes=bad)).fit(x)
    # ... and already when the tokenizer's settings are read, before any item is embedded
    from recbole_lamia.tokenizer.item_tokenizer import tokenizer_params

    with pytest.raises(ValueError, match="coarse_sizes"):
        tokenizer_params({"quantizer": "multiscale_kmeans", "item_text_fields": ["title"], "codebook_size": 8,
                          "multiscale_kmeans_coarse_sizes": [8]})


def test_quantizer_defaults_enter_the_tokenizer_params_and_the_cache_key(monkeypatch):
    from recbole_lamia.quantizer.multiscale_kmeans import MultiscaleKMeansQuantizer
    from recbole_lamia.tokenizer.item_tokenizer import ItemTokenizer, tokenizer_params

    base = {"quantizer": "multiscale_kmeans", "item_text_fields": ["title"], "codebook_size": 2048}
    params = tokenizer_params(base)
    assert params["multiscale_kmeans_coarse_sizes"] == "auto"
    key = ItemTokenizer(params).code_key("embeddings")
    assert ItemTokenizer(tokenizer_params(dict(base, codebook_size=1024))).code_key("embeddings") != key
    explicit = ItemTokenizer(tokenizer_params(dict(base, multiscale_kmeans_coarse_sizes=[128])))
    assert explicit.code_key("embeddings") != key
    # Changing the default changes the key: codes made with the old default are not loaded.
    monkeypatch.setitem(MultiscaleKMeansQuantizer.DEFAULTS, "multiscale_kmeans_coarse_sizes", [128])
    assert ItemTokenizer(tokenizer_params(base)).code_key("embeddings") == explicit.code_key("embeddings")


def test_a_level_option_the_quantizer_ignores_keys_no_codes_and_is_reported():
    from recbole_lamia.tokenizer.item_tokenizer import (
        ItemTokenizer,
        ignored_tokenizer_keys,
        tokenizer_params,
        unused_level_keys,
    )

    def key(**settings):
        return ItemTokenizer(tokenizer_params({"item_text_fields": ["title"], **settings})).code_key("embeddings")

    # ml-100k's LAMIA file sets pq_subspaces: 16; a palette run there with k-means must find its old codes.
    assert key(quantizer="kmeans", pq_subspaces=16) == key(quantizer="kmeans")
    assert key(quantizer="multiscale_kmeans", rq_levels=5) == key(quantizer="multiscale_kmeans")
    assert key(quantizer="pq", pq_subspaces=16) != key(quantizer="pq", pq_subspaces=8)
    assert key(quantizer="rq_kmeans", rq_levels=4) != key(quantizer="rq_kmeans")
    assert key(quantizer="random", random_levels=2) != key(quantizer="random")
    assert unused_level_keys("pq") == ("rq_levels", "random_levels")

    # A quantizer of your own that does not declare LEVEL_OPTIONS: every level option keys its codes.
    @register_quantizer("test_undeclared_levels")
    class Undeclared(get_quantizer_class("kmeans")):
        LEVEL_OPTIONS = None

    try:
        assert unused_level_keys("test_undeclared_levels") == ()
        assert key(quantizer="test_undeclared_levels", pq_subspaces=16) != key(quantizer="test_undeclared_levels")
    finally:
        QUANTIZER_REGISTRY.pop("test_undeclared_levels")

    sentence = tokenizer_params({"item_text_fields": ["title"], "item_embedding": "sentence", "quantizer": "kmeans"})
    given = {"palette_size", "use_contrastive", "pq_subspaces", "rq_levels", "codebook_size", "learning_rate"}
    assert ignored_tokenizer_keys(sentence, given) == ["palette_size", "pq_subspaces", "rq_levels", "use_contrastive"]
    assert ignored_tokenizer_keys(sentence, given, with_quantizer=False) == ["palette_size", "use_contrastive"]
    palette_pq = tokenizer_params({"item_text_fields": ["title"], "quantizer": "pq"})
    assert ignored_tokenizer_keys(palette_pq, given) == ["rq_levels"]


def test_multiscale_kmeans_default_coarse_size_follows_the_capped_codebook():
    # amazon-beauty's setting: 2048 fine codes give 256 coarse ones, the size its leaderboard row was trained with
    x = _embeddings(n=3000, h=1, d=4)
    quantizer = get_quantizer_class("multiscale_kmeans")(dict(FAST, codebook_size=2048, kmeans_iterations=2,
                                                                multiscale_kmeans_coarse_sizes="auto"))
    quantizer.fit(x)
    assert quantizer.codebook_sizes == [2048, 256]
    # the model default (256 codes) on 20 items: the fine size is capped to 20, the coarse one to 20 // 8
    small = get_quantizer_class("multiscale_kmeans")(dict(FAST, codebook_size=256,
                                                          multiscale_kmeans_coarse_sizes="auto"))
    codes = small.fit_encode(_embeddings(n=20, h=2, d=4))
    assert small.codebook_sizes == [20, 20, 2, 2] and codes.shape == (20, 4) and codes[:, 2:].max() <= 1
    assert len(np.unique(codes[:, 2])) == 2  # a coarse level of 2 codes, never a constant one
    two = get_quantizer_class("multiscale_kmeans")(dict(FAST, codebook_size=256, multiscale_kmeans_coarse_sizes="auto"))
    assert two.fit_encode(_embeddings(n=2, h=2, d=4)).shape == (2, 2)  # 2 fine codes: no coarse level
