"""End to end through RecBole's own machinery on the tiny synthetic dataset."""

import math

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.quick_start import run_recbole
from recbole.trainer import Trainer
from recbole.utils import get_model, init_seed

from recbole_lamia import LAMIA, LAMIADataset
from tests.conftest import TINY_DATASET, tiny_config


def _build(model, config_dict):
    config = Config(model=model, dataset=TINY_DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return config, dataset


def _untrained_lamia_and_test_batch(config_dict):
    """An untrained LAMIA in eval mode on the tiny dataset, and its first test batch."""
    config, dataset = _build("LAMIA", config_dict)
    train, _, test = data_preparation(config, dataset)
    return LAMIA(config, train._dataset).eval(), next(iter(test))[0]


def test_lamia_trains_and_evaluates_with_recbole_trainer(tiny_data_path, tiny_bert_path, tmp_path):
    config, dataset = _build("LAMIA", tiny_config(tiny_data_path, tiny_bert_path, tmp_path))
    assert isinstance(dataset, LAMIADataset)
    ids = dataset.item_semantic_ids
    assert ids.shape == (dataset.item_num, 3) and ids.dtype == torch.long
    assert (ids[0] == -1).all() and (ids[1:] >= 0).all() and (ids[1:] < 16).all()
    assert len(torch.unique(ids[1:], dim=0)) == dataset.item_num - 1  # collision-free

    train, valid, test = data_preparation(config, dataset)
    model = get_model("LAMIA")(config, train._dataset)
    trainer = Trainer(config, model)
    best_valid, _ = trainer.fit(train, valid, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)  # exercises torch.load shim
    for metric in ("recall@10", "ndcg@10", "recall@5", "ndcg@5"):
        assert math.isfinite(result[metric]) and 0.0 <= result[metric] <= 1.0
    assert math.isfinite(best_valid)

    batch = next(iter(test))[0]
    scores = model.full_sort_predict(batch.to(model.device))
    assert scores.shape == (batch[model.ITEM_SEQ].size(0), dataset.item_num)
    assert torch.isfinite(scores[:, 1:]).all()


def test_full_sort_scores_equal_sum_of_token_log_probs(tiny_data_path, tiny_bert_path, tmp_path):
    model, batch = _untrained_lamia_and_test_batch(tiny_config(tiny_data_path, tiny_bert_path, tmp_path))
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        log_probs = model.level_log_probs(model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]))
        item = 5
        expected = sum(lp[:, model.item_codes[item, level]] for level, lp in enumerate(log_probs))
        assert torch.allclose(scores[:, item], expected, atol=1e-5)
        # predict() agrees with full_sort_predict() for given items
        batch.interaction[model.ITEM_ID] = torch.full_like(batch[model.ITEM_SEQ_LEN], item)
        assert torch.allclose(model.predict(batch), expected, atol=1e-5)
        # Evaluation scores through folded item vectors, cached; an optimizer-style in-place step or a loaded
        # state dict must refresh them, so the scores stay those of the unfolded product.
        for change in (lambda: model.level_query.bias.add_(0.5),
                       lambda: model.load_state_dict({**model.state_dict(),
                                                      "token_embedding.weight": model.token_embedding.weight * 2})):
            stale = model.full_sort_predict(batch)
            change()
            exact = _summed_token_log_probs(model, model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]))
            fresh = model.full_sort_predict(batch)
            assert not torch.allclose(stale[:, 1:], fresh[:, 1:], atol=1e-3)
            assert torch.allclose(fresh[:, 1:], exact[:, 1:], atol=1e-4)


def _summed_token_log_probs(model, output):
    """Reference scores, independent of item_logits: per item, the sum of its tokens' log-probabilities."""
    log_probs = model.level_log_probs(output)
    return torch.stack([lp[:, model.item_codes[:, level]] for level, lp in enumerate(log_probs)]).sum(0)


@pytest.mark.parametrize("collision_handling", ["reassign", "extra_token"])
def test_full_sort_equals_summed_token_log_probs_for_every_item(tiny_data_path, tiny_bert_path, tmp_path,
                                                                 collision_handling):
    config_dict = dict(tiny_config(tiny_data_path, tiny_bert_path, tmp_path), collision_handling=collision_handling)
    config, dataset = _build("LAMIA", config_dict)
    train, _, test = data_preparation(config, dataset)
    model = LAMIA(config, train._dataset).eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        expected = _summed_token_log_probs(model, model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]))
    assert torch.isinf(scores[:, 0]).all()
    assert torch.allclose(scores[:, 1:], expected[:, 1:], atol=1e-5)


def test_item_loss_is_cross_entropy_over_whole_ids(tiny_data_path, tiny_bert_path, tmp_path):
    config_dict = dict(tiny_config(tiny_data_path, tiny_bert_path, tmp_path), item_loss_weight=0.5)
    config, dataset = _build("LAMIA", config_dict)
    train, _, _ = data_preparation(config, dataset)
    model = LAMIA(config, train._dataset).eval()  # eval: no dropout, so the two losses see the same outputs
    token_only = LAMIA(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=dict(config_dict, item_loss_weight=0)),
                       train._dataset).eval()
    token_only.load_state_dict(model.state_dict())
    batch = next(iter(train))
    output, targets, _ = model._all_position_targets(batch)
    reference = _summed_token_log_probs(model, output)[:, 1:]  # item 0 is padding, never a target
    expected_item_term = torch.nn.functional.cross_entropy(reference, targets - 1)
    with_item, without = model.calculate_loss(batch), token_only.calculate_loss(batch)
    assert torch.allclose(with_item - without, 0.5 * expected_item_term, atol=1e-5)
    # The item term changes the gradient (it is not detached).
    grads = []
    for weight in (0.5, 0.0):
        model.item_loss_weight = weight
        model.zero_grad()
        model.calculate_loss(batch).backward()
        grads.append(model.token_embedding.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_item_label_smoothing_spreads_over_real_items_only(tiny_data_path, tiny_bert_path, tmp_path):
    config_dict = dict(tiny_config(tiny_data_path, tiny_bert_path, tmp_path), item_label_smoothing=0.2)
    config, dataset = _build("LAMIA", config_dict)
    train, _, _ = data_preparation(config, dataset)
    model = LAMIA(config, train._dataset).eval()
    output, targets, _ = model._all_position_targets(next(iter(train)))
    log_probs = torch.log_softmax(_summed_token_log_probs(model, output)[:, 1:], dim=-1)  # real items only
    nll = -log_probs.gather(1, (targets - 1).unsqueeze(1)).squeeze(1)
    expected = (0.8 * nll - 0.2 * log_probs.mean(1)).mean()
    loss = model.item_loss(output, targets)
    assert torch.isfinite(loss) and torch.allclose(loss, expected, atol=1e-5)
    model.item_label_smoothing = 0.0  # plain cross-entropy (near-uniform logits at init make the two losses close)
    assert torch.allclose(model.item_loss(output, targets), nll.mean(), atol=1e-5)
    for bad in ({"item_label_smoothing": 1.0}, {"item_loss_weight": 0}):  # out of range; nothing to smooth
        with pytest.raises(ValueError, match="item_label_smoothing"):
            LAMIA(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=dict(config_dict, **bad)), train._dataset)


def test_negative_item_loss_weight_is_rejected(tiny_data_path, tiny_bert_path, tmp_path):
    config, dataset = _build("LAMIA", dict(tiny_config(tiny_data_path, tiny_bert_path, tmp_path), item_loss_weight=-1))
    train, _, _ = data_preparation(config, dataset)
    with pytest.raises(ValueError, match="item_loss_weight"):
        LAMIA(config, train._dataset)


def test_aspect_dropout_drops_whole_tokens_in_training_only(tiny_data_path, tiny_bert_path, tmp_path):
    config_dict = dict(tiny_config(tiny_data_path, tiny_bert_path, tmp_path), aspect_dropout_prob=0.5)
    config, dataset = _build("LAMIA", config_dict)
    train, _, _ = data_preparation(config, dataset)
    model = LAMIA(config, train._dataset)
    items = torch.arange(1, dataset.item_num).repeat(50, 1)  # [50, n_items - 1]: every item many times
    model.eval()
    assert torch.equal(model.history_representation(items), model.item_representation(items))
    # Evaluation sums each item's tokens once and indexes that table: the same sums, bit for bit.
    with torch.no_grad():
        assert torch.equal(model.item_representation(items),
                           model.token_embedding(model.item_token_index[items]).sum(-2))
    model.train()
    torch.manual_seed(0)
    dropped = model.history_representation(items)
    tokens = model.token_embedding(model.item_token_index[items])  # [50, n - 1, h, hidden]
    # Each representation is 1 / (1 - p) times the sum of a subset of the item's own tokens.
    kept = torch.linalg.lstsq(tokens.transpose(-1, -2), (dropped * 0.5).unsqueeze(-1)).solution.squeeze(-1)
    assert torch.allclose(kept, kept.round(), atol=1e-3) and set(kept.round().unique().tolist()) == {0.0, 1.0}
    assert abs(kept.round().mean().item() - 0.5) < 0.05
    with pytest.raises(ValueError, match="aspect_dropout_prob"):
        LAMIA(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=dict(config_dict, aspect_dropout_prob=1.0)),
              train._dataset)


def test_run_recbole_entry_point_uses_plugin_yaml(tiny_data_path, tiny_bert_path, tmp_path):
    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path)
    result = run_recbole(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict, saved=False)
    assert set(result) >= {"best_valid_result", "test_result"}
    assert math.isfinite(result["test_result"]["ndcg@10"])


def test_causal_lm_encoder_builds_a_palette(tiny_data_path, tiny_opt_path, tmp_path):
    config, dataset = _build("LAMIA", tiny_config(tiny_data_path, tiny_opt_path, tmp_path))
    assert dataset.item_semantic_ids.shape[1] == 3
    history = dataset.semantic_id_report["embedding"]["history"]
    assert history and all(math.isfinite(h["total"]) for h in history)


def test_unseen_item_has_a_token_representation(tiny_data_path, tiny_bert_path, tmp_path):
    config, dataset = _build("LAMIA", tiny_config(tiny_data_path, tiny_bert_path, tmp_path))
    train, _, _ = data_preparation(config, dataset)
    model = LAMIA(config, train._dataset)
    rep = model.item_representation(torch.tensor([1, 2]))
    assert rep.shape == (2, 16) and rep.abs().sum() > 0
    assert model.item_id_embedding is None


def test_beam_search_scores_only_real_items_with_their_exact_scores(tiny_data_path, tiny_bert_path, tmp_path):
    model, batch = _untrained_lamia_and_test_batch(tiny_config(tiny_data_path, tiny_bert_path, tmp_path))
    with torch.no_grad():
        exact = model.full_sort_predict(batch)
        model.beam_search, model.beam_size = True, 12
        beam = model.full_sort_predict(batch)
    kept = torch.isfinite(beam)
    assert (kept.sum(1) == 12).all() and not kept[:, 0].any()  # 12 real items, never the padding item
    assert torch.allclose(beam[kept], exact[kept], atol=1e-5)
    with torch.no_grad():  # a beam as wide as the catalogue is exact
        model.beam_size = model.n_items - 1
        wide = model.full_sort_predict(batch)
    assert torch.isfinite(wide[:, 1:]).all()
    assert torch.allclose(wide[:, 1:], exact[:, 1:], atol=1e-5)


def test_beam_smaller_than_topk_is_rejected_before_training(tiny_data_path, tiny_bert_path, tmp_path):
    import pytest

    config, dataset = _build("LAMIA", tiny_config(tiny_data_path, tiny_bert_path, tmp_path, beam_search=True,
                                                  beam_size=5))
    train, _, _ = data_preparation(config, dataset)
    with pytest.raises(ValueError, match="beam_size \\(5\\) must be >= the largest topk \\(10\\)"):
        LAMIA(config, train._dataset)


def test_keep_sequence_ends_keeps_each_users_last_sample_and_every_max_len_th_before():
    from types import SimpleNamespace

    from recbole.data.interaction import Interaction

    from recbole_lamia.data.dataset import keep_sequence_ends

    users = torch.tensor([1, 1, 1, 2, 2, 3])
    train = SimpleNamespace(uid_field="user_id",
                            inter_feat=Interaction({"user_id": users, "row": torch.arange(6)}))
    kept = keep_sequence_ends(train, max_len=2)
    assert kept.inter_feat["row"].tolist() == [0, 2, 4, 5]


def test_content_term_adds_learned_text_similarity_to_the_last_item(tiny_data_path, tiny_bert_path, tmp_path):
    """``content_score_weight``: every score (full sort, sampled, training loss) gains the learned weight times the
    cosine of the item's sentence embedding to the last history item's, 0 for that item itself."""
    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, content_score_weight=3.0)
    config, dataset = _build("LAMIA", config_dict)
    assert dataset.item_text_embeddings.shape[0] == dataset.item_num
    train, _, test = data_preparation(config, dataset)
    model = LAMIA(config, train._dataset).eval()
    plain = LAMIA(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=dict(config_dict, content_score_weight=0)),
                  train._dataset).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    batch = next(iter(test))[0]
    vectors = torch.nn.functional.normalize(dataset.item_text_embeddings.flatten(1), dim=-1)
    last = batch["item_id_list"].gather(1, (batch["item_length"] - 1).unsqueeze(1)).squeeze(1)
    similarity = vectors[last] @ vectors.t()
    similarity[torch.arange(len(last)), last] = 0.0
    with torch.no_grad():
        scores, plain_scores = model.full_sort_predict(batch), plain.full_sort_predict(batch)
        torch.testing.assert_close(scores[:, 1:] - plain_scores[:, 1:], 3.0 * similarity[:, 1:], atol=1e-4, rtol=1e-4)
        batch.interaction["item_id"] = torch.randint(1, dataset.item_num, (len(batch),))
        torch.testing.assert_close(model.predict(batch), scores.gather(1, batch["item_id"].unsqueeze(1)).squeeze(1),
                                   atol=1e-4, rtol=1e-4)
    model.train()
    loss = model.calculate_loss(next(iter(train)))
    loss.backward()
    assert model.content_weight.grad is not None and model.content_weight.grad.abs() > 0  # the weight is learned
    with pytest.raises(Exception, match="content_score_weight"):
        LAMIA.check_config(Config(model="LAMIA", dataset=TINY_DATASET,
                                  config_dict=dict(config_dict, beam_search=True)))


def test_trained_negatives_and_popularity_prior(tiny_data_path, tiny_bert_path, tmp_path):
    """On a cold-start split, ``item_loss_negatives: trained`` leaves the cold items out of the whole-item softmax
    (its loss does not depend on their scores), while ``all`` pushes them down; ``popularity_prior_weight`` adds
    tau * log(training share) to every score, a cold item counted as ``unseen_item_count`` targets."""
    from recbole_lamia.data.cold_start import cold_start_build, select_cold_items
    from recbole_lamia.model.sequential_recommender.lamia import training_target_counts

    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, item_loss_negatives="trained",
                              popularity_prior_weight=0.5, unseen_item_count=2.0)
    config, dataset = _build("LAMIA", config_dict)
    cold = select_cold_items(dataset, 0.2, seed=3)
    with cold_start_build(cold):
        train, _, test = data_preparation(config, dataset)
    model = LAMIA(config, train._dataset)
    plain = LAMIA(Config(model="LAMIA", dataset=TINY_DATASET,
                         config_dict=dict(config_dict, popularity_prior_weight=0, item_loss_negatives="all")),
                  train._dataset)
    assert "train_target_counts" in model.state_dict()  # saved: a loaded model scores with its training counts
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected == ["train_target_counts"]
    # the counts are the targets calculate_loss trains on, position by position; cold items have none
    counts = training_target_counts(train._dataset, "item_id_list", "item_length", True, dataset.item_num)
    _, targets, _ = model._all_position_targets(train._dataset.inter_feat)
    assert counts.tolist() == torch.bincount(targets, minlength=dataset.item_num).tolist()
    assert (counts[torch.from_numpy(cold)] == 0).all()
    assert set(model.trained_columns.tolist()) == set(torch.nonzero(counts).squeeze(1).tolist())

    model.eval(), plain.eval()
    batch = next(iter(test))[0]
    smoothed = torch.where(counts > 0, counts.double(), torch.tensor(2.0))
    expected = (0.5 * torch.log(smoothed / counts.sum())).float()
    with torch.no_grad():
        difference = model.full_sort_predict(batch)[:, 1:] - plain.full_sort_predict(batch)[:, 1:]
        torch.testing.assert_close(difference, expected[1:].expand_as(difference), atol=1e-4, rtol=1e-4)
        batch.interaction["item_id"] = torch.randint(1, dataset.item_num, (len(batch),))
        torch.testing.assert_close(model.predict(batch) - plain.predict(batch), expected[batch["item_id"]],
                                   atol=1e-4, rtol=1e-4)

    before = model.item_prior().clone()
    model.set_unseen_item_count(4.0)  # moves the unseen items' prior, nothing else
    after = model.item_prior()
    moved = torch.nonzero(after != before).squeeze(1)
    assert set(moved.tolist()) == set(torch.nonzero(counts == 0).squeeze(1).tolist()) - {0}
    torch.testing.assert_close(after[moved] - before[moved],
                               torch.full((len(moved),), 0.5 * math.log(2.0)))
    # training: the item loss does not depend on a cold item's score with trained negatives; with all, it does
    model.train(), plain.train()
    output, target = torch.randn(8, model.hidden_size), targets[:8]
    for recommender, reached in ((model, False), (plain, True)):
        shift = torch.zeros(dataset.item_num, requires_grad=True)
        logits = recommender.item_logits
        recommender.item_logits = lambda seq_output, logits=logits, shift=shift: logits(seq_output) + shift
        recommender.item_loss(output, target).backward()
        assert bool((shift.grad[torch.from_numpy(cold)] != 0).any()) == reached
        assert (shift.grad[targets[:8]] != 0).all()  # the trained items are scored either way
    with pytest.raises(Exception, match="unseen_item_count must be a number > 0"):
        model.set_unseen_item_count(0)
    with pytest.raises(Exception, match="needs popularity_prior_weight"):
        plain.set_unseen_item_count(3)
    for bad in ({"item_loss_negatives": "some"}, {"popularity_prior_weight": -1}, {"unseen_item_count": 0},
                {"popularity_prior_weight": 1.0, "beam_search": True},
                {"item_loss_negatives": "trained", "item_loss_weight": 0}):
        with pytest.raises(Exception, match=next(iter(bad))):
            LAMIA.check_config(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=dict(config_dict, **bad)))
