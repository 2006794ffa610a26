"""TIGER through RecBole's own machinery, and its trie-constrained beam search against brute force."""

import itertools
import math

import numpy as np
import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.quick_start import run_recbole
from recbole.trainer import Trainer
from recbole.utils import get_model, init_seed

from recbole_lamia import TIGER, TIGERDataset
from recbole_lamia.model.layers.dropout import CPUFastDropout
from recbole_lamia.model.sequential_recommender.tiger import length_groups
from tests.conftest import TINY_DATASET, tiny_config

TINY_TIGER = {"d_model": 16, "d_kv": 8, "d_ff": 32, "num_heads": 2, "num_encoder_layers": 1,
              "num_decoder_layers": 1, "rqvae_epochs": 5, "rqvae_hidden_dims": [32, 16], "rqvae_latent_dim": 8,
              "rqvae_batch_size": 64}


def _tiger_config(data_path, encoder_path, tmp_path, **overrides):
    return tiny_config(data_path, encoder_path, tmp_path, **{**TINY_TIGER, **overrides})


@pytest.fixture(scope="module")
def built(tiny_data_path, tiny_bert_path, tmp_path_factory):
    """``(config, dataset, train, valid, test)`` for TIGER on the tiny dataset, built once."""
    config = Config(model="TIGER", dataset=TINY_DATASET,
                    config_dict=_tiger_config(tiny_data_path, tiny_bert_path, tmp_path_factory.mktemp("tiger")))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return (config, dataset, *data_preparation(config, dataset))


def test_get_model_returns_the_plugin_class():
    assert get_model("TIGER") is TIGER


def test_dataset_has_collision_free_four_token_ids(built):
    config, dataset = built[:2]
    assert isinstance(dataset, TIGERDataset)
    assert config["quantizer"] == "rqvae" and config["item_embedding"] == "sentence"
    ids = dataset.item_semantic_ids
    assert ids.shape == (dataset.item_num, 4) and ids.dtype == torch.long  # 3 RQ-VAE levels + extra token
    assert (ids[0] == -1).all() and (ids[1:] >= 0).all()
    assert len(torch.unique(ids[1:], dim=0)) == dataset.item_num - 1
    history = dataset.semantic_id_report["codes"]["history"]
    assert len(history) == 5 and all(math.isfinite(h["loss"]) for h in history)


def test_trains_and_evaluates_with_recbole_trainer(built):
    config, dataset, train, valid, test = built
    init_seed(config["seed"], config["reproducibility"])
    model = TIGER(config, train._dataset)
    trainer = Trainer(config, model)
    best_valid, _ = trainer.fit(train, valid, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    assert math.isfinite(best_valid)
    for metric in ("recall@10", "ndcg@10", "recall@5", "ndcg@5"):
        assert math.isfinite(result[metric]) and 0.0 <= result[metric] <= 1.0

    batch = next(iter(test))[0]
    with torch.no_grad():
        scores = model.eval().full_sort_predict(batch)
    assert scores.shape == (batch[model.ITEM_SEQ].size(0), dataset.item_num)
    finite = torch.isfinite(scores)
    assert (finite.sum(1) == model.beam_size).all() and not finite[:, 0].any()  # beam items only, all real
    assert (scores[finite] <= 0).all()


def test_run_recbole_entry_point(tiny_data_path, tiny_bert_path, tmp_path):
    config_dict = _tiger_config(tiny_data_path, tiny_bert_path, tmp_path)
    result = run_recbole(model="TIGER", dataset=TINY_DATASET, config_dict=config_dict, saved=False)
    assert math.isfinite(result["test_result"]["ndcg@10"])


# --- beam search on a hand-made catalogue, no dataset needed ---------------------------------------

class _Catalogue:
    """What TIGER reads from a dataset: the number of items and their semantic IDs."""

    def __init__(self, item_semantic_ids):
        self.item_semantic_ids = item_semantic_ids

    def num(self, field):
        return len(self.item_semantic_ids)


def _catalogue(n_items=30, level_sizes=(3, 4, 3), seed=0):
    """``n_items - 1`` distinct random IDs (plus the padding row) over ``level_sizes``."""
    every_id = list(itertools.product(*(range(size) for size in level_sizes)))
    chosen = np.random.default_rng(seed).choice(len(every_id), size=n_items - 1, replace=False)
    codes = torch.tensor([every_id[i] for i in sorted(chosen)], dtype=torch.long)
    return _Catalogue(torch.cat([torch.full((1, len(level_sizes)), -1), codes]))


def _model_config(**overrides):
    config = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
              "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": 6,
              "device": torch.device("cpu"), "topk": [5, 10], "beam_size": 12, "train_all_positions": False,
              "tiger_use_user_token": False, "tiger_user_buckets": 2000, "relative_attention_num_buckets": 32,
              "dropout_rate": 0.1, "fast_dropout": True, **TINY_TIGER}
    config.update(overrides)
    return config


def _histories(model, batch=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, model.max_seq_length + 1, (batch,), generator=generator)
    items = torch.randint(1, model.n_items, (batch, model.max_seq_length), generator=generator)
    items[torch.arange(model.max_seq_length)[None, :] >= lengths[:, None]] = 0  # RecBole pads at the end
    return Interaction({"item_id_list": items, "item_length": lengths,
                        "user_id": torch.arange(1, batch + 1) * 977})


def _brute_force_scores(model, interaction):
    """``[B, n_items - 1]`` teacher-forced log-probabilities of every real item (item i in column i - 1)."""
    columns = []
    for item in range(1, model.n_items):
        interaction.interaction["item_id"] = torch.full_like(interaction["item_length"], item)
        columns.append(model.predict(interaction))
    return torch.stack(columns, 1)


@pytest.mark.parametrize("use_user_token", [False, True])
def test_beam_top_items_match_brute_force_enumeration(use_user_token):
    torch.manual_seed(0)
    # A beam of 12 keeps every prefix of a (3, 4, 3) catalogue, so the beam search is exact here.
    model = TIGER(_model_config(tiger_use_user_token=use_user_token), _catalogue()).eval()
    interaction = _histories(model)
    with torch.no_grad():
        items, beam_scores = model.beam_search(interaction)
        brute = _brute_force_scores(model, interaction)
        full = model.full_sort_predict(interaction)
    assert items.shape == beam_scores.shape == (4, 12)
    assert ((items >= 1) & (items < model.n_items)).all()
    assert all(len(set(row.tolist())) == 12 for row in items)  # distinct, real items
    expected = brute.argsort(dim=1, descending=True)[:, :12] + 1
    assert torch.equal(items, expected)
    torch.testing.assert_close(beam_scores, brute.gather(1, items - 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.gather(1, items), beam_scores)
    assert torch.isinf(full).sum(1).eq(model.n_items - 12).all()


def test_narrow_beam_only_returns_valid_items():
    torch.manual_seed(0)
    model = TIGER(_model_config(beam_size=10), _catalogue(level_sizes=(5, 5, 5))).eval()
    with torch.no_grad():
        items, scores = model.beam_search(_histories(model, batch=6))
    assert ((items >= 1) & (items < model.n_items)).all() and torch.isfinite(scores).all()
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


@pytest.mark.parametrize("use_user_token", [False, True])
def test_cached_beam_search_gives_the_uncached_beams(use_user_token):
    """The key/value-cached decoder (one new token per beam and level, the beams' cache rows reordered) against
    rerunning the whole prefix, with a beam narrower than the catalogue so that pruning and reordering matter
    (beam widths 1, 4, 10, 10: the last level reorders a full beam in place)."""
    torch.manual_seed(0)
    model = TIGER(_model_config(beam_size=10, tiger_use_user_token=use_user_token),
                  _catalogue(n_items=300, level_sizes=(4, 6, 6, 6))).eval()
    interaction = _histories(model, batch=9)
    with torch.no_grad():
        cached = model.beam_search(interaction)
        uncached = model.beam_search(interaction, use_cache=False)
    assert torch.equal(cached[0], uncached[0])
    torch.testing.assert_close(cached[1], uncached[1], atol=1e-5, rtol=1e-5)
    assert len(set(cached[0][:, 0].tolist())) > 1  # not one answer for every user


def test_length_groups_cover_each_row_once_with_room_for_it():
    lengths = torch.tensor([3, 80, 7, 3, 12, 80, 1, 7, 40])
    for overhead, expected_groups in ((0, 6), (10 ** 9, 1), (40, None)):
        groups = length_groups(lengths, overhead)
        rows = torch.cat([group for group, _ in groups])
        assert sorted(rows.tolist()) == list(range(len(lengths)))
        assert all((lengths[group] <= width).all() and lengths[group].max() == width for group, width in groups)
        if expected_groups is not None:
            assert len(groups) == expected_groups
    # The split is optimal: no way of cutting the sorted distinct lengths into runs costs less.
    distinct = sorted(set(lengths.tolist()))
    counts = [int((lengths == width).sum()) for width in distinct]
    costs = []
    for cuts in itertools.product([False, True], repeat=len(distinct) - 1):
        cost, rows = 0, 0
        for index, count in enumerate(counts):
            rows += count
            if index == len(counts) - 1 or cuts[index]:
                cost, rows = cost + 40 + rows * distinct[index], 0
        costs.append(cost)
    assert sum(40 + len(group) * width for group, width in length_groups(lengths, 40)) == min(costs)


def test_length_grouped_passes_give_the_padded_loss_scores_and_gradients():
    torch.manual_seed(0)
    model = TIGER(_model_config(), _catalogue()).eval()  # eval: no dropout, so both passes are deterministic
    interaction = _histories(model, batch=16)
    interaction.interaction["item_id"] = torch.randint(1, model.n_items, (16,))
    results = []
    for overhead in (10 ** 9, 0):  # one padded pass; one pass per distinct history length
        model.group_overhead_tokens = overhead
        model.zero_grad()
        loss = model.calculate_loss(interaction)
        loss.backward()
        with torch.no_grad():
            beams = model.beam_search(interaction)
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None], beams))
    assert len(model._length_groups(model.encoder_inputs(interaction)[1])) > 2
    torch.testing.assert_close(results[0][0], results[1][0])
    for padded, grouped in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(padded, grouped, atol=1e-5, rtol=1e-4)
    assert torch.equal(results[0][2][0], results[1][2][0])
    torch.testing.assert_close(results[0][2][1], results[1][2][1], atol=1e-5, rtol=1e-5)


def test_user_token_leads_the_encoder_input():
    model = TIGER(_model_config(tiger_use_user_token=True), _catalogue())
    input_ids, mask = model.encoder_inputs(_histories(model))
    user_tokens = input_ids[:, 0]
    assert ((user_tokens >= model.user_token_offset) & (user_tokens < model.user_token_offset + 2000)).all()
    assert input_ids.shape[1] == 1 + model.max_seq_length * 3 and mask[:, 0].all()


def test_beam_smaller_than_topk_is_rejected_before_training():
    with pytest.raises(ValueError, match="beam_size"):
        TIGER(_model_config(beam_size=5, topk=[5, 10]), _catalogue())


def test_dataset_without_semantic_ids_is_rejected():
    class Plain:
        def num(self, field):
            return 10

    with pytest.raises(ValueError, match="item_semantic_ids"):
        TIGER(_model_config(), Plain())


def test_train_all_positions_is_rejected():
    with pytest.raises(ValueError, match="train_all_positions"):
        TIGER(_model_config(train_all_positions=True), _catalogue())


def test_fast_dropout_setting_swaps_t5_dropout_modules_only():
    torch.manual_seed(0)
    fast = TIGER(_model_config(), _catalogue())
    torch.manual_seed(0)
    native = TIGER(_model_config(fast_dropout=False), _catalogue())
    count = sum(type(m) is torch.nn.Dropout for m in native.modules())
    assert count > 0 and sum(isinstance(m, CPUFastDropout) for m in fast.modules()) == count
    assert not any(type(m) is torch.nn.Dropout for m in fast.modules())
    fast_state, native_state = fast.state_dict(), native.state_dict()
    assert fast_state.keys() == native_state.keys()
    assert all(torch.equal(fast_state[key], native_state[key]) for key in fast_state)
    interaction = _histories(fast, batch=8)
    interaction.interaction["item_id"] = torch.randint(1, fast.n_items, (8,))
    fast.eval()
    eval_loss = fast.calculate_loss(interaction)
    calls = []
    for module in fast.modules():
        if isinstance(module, CPUFastDropout):
            module.register_forward_hook(lambda *_: calls.append(1))
    fast.train()
    assert not torch.equal(fast.calculate_loss(interaction), eval_loss)  # dropout is active in training
    assert len(calls) >= count  # every replaced module ran in the training pass
