"""Sampled evaluation (``uni100``, ``pop100``): RecBole repeats each history once per candidate item, and the
models' ``predict`` encodes each distinct history once yet gives every row the score it had on its own."""

import math

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader
from recbole.trainer import Trainer
from recbole.utils import init_seed

from recbole_lamia import LAMIA, TIGER
from tests.conftest import TINY_DATASET, tiny_config
from tests.test_tiger import TINY_TIGER

SPLIT = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user"}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def _prepare(model, config_dict):
    """``(config, train, valid, test)`` built through RecBole's own Config / create_dataset / data_preparation."""
    config = Config(model=model, dataset=TINY_DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    return (config, *data_preparation(config, create_dataset(config)))


def _sampled_batch(test):
    """The first test batch and its number of distinct histories; asserts RecBole's 1 + 100 rows per history."""
    assert isinstance(test, NegSampleEvalDataLoader)
    batch = next(iter(test))[0]
    n_histories = len(torch.unique(batch["item_id_list"], dim=0))
    assert n_histories > 1 and len(batch) == 101 * n_histories
    return batch


def _rows_encoded(module, predict, batch):
    """``(scores, rows)``: ``predict(batch)`` and the batch sizes ``module`` saw meanwhile."""
    rows = []
    hook = module.register_forward_hook(lambda _module, args, kwargs, _out: rows.append(
        (args[0] if args else kwargs["input_ids"]).size(0)), with_kwargs=True)
    try:
        scores = predict(batch)
    finally:
        hook.remove()
    return scores, rows


def lamia_per_row_predict(model, interaction):
    """LAMIA's scores computed row by row (the history encoded once per row), as before sharing histories."""
    log_probs = model.level_log_probs(model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN]))
    target = model.item_codes[interaction[model.ITEM_ID]]
    return sum(lp.gather(1, target[:, level:level + 1]).squeeze(1) for level, lp in enumerate(log_probs))


def test_lamia_predict_encodes_each_history_once_with_per_row_scores(tiny_data_path, tiny_bert_path, tmp_path):
    config, train, _, test = _prepare("LAMIA", tiny_config(tiny_data_path, tiny_bert_path, tmp_path,
                                                           eval_args={**SPLIT, "mode": "uni100"}))
    model = LAMIA(config, train._dataset).eval()
    with torch.no_grad():  # spread the scores (at initialisation they are nearly uniform)
        model.token_embedding.weight.mul_(20)
        model.level_query.weight.mul_(20)
    batch = _sampled_batch(test)
    items = batch[model.ITEM_ID]
    with torch.no_grad():
        scores, rows = _rows_encoded(model.trm_encoder, model.predict, batch)
        full = model.full_sort_predict(batch).gather(1, items.unsqueeze(1)).squeeze(1)  # every row encoded
        per_row = lamia_per_row_predict(model, batch)
        shuffle = torch.randperm(len(batch), generator=torch.Generator().manual_seed(0))
        shuffled, shuffled_rows = _rows_encoded(model.trm_encoder, model.predict, batch[shuffle])
    assert rows == shuffled_rows == [len(batch) // 101]
    assert scores.std() > 0.1
    assert torch.allclose(scores, full, atol=1e-5) and torch.allclose(scores, per_row, atol=1e-5)
    assert torch.allclose(shuffled, scores[shuffle], atol=1e-5)  # nor on RecBole's row order


def test_tiger_predict_encodes_each_history_once_with_per_row_scores(tiny_data_path, tiny_bert_path, tmp_path):
    config, train, _, test = _prepare("TIGER", tiny_config(tiny_data_path, tiny_bert_path, tmp_path, **TINY_TIGER,
                                                           tiger_use_user_token=True,
                                                           eval_args={**SPLIT, "mode": "pop100"}))
    model = TIGER(config, train._dataset).eval()
    batch = _sampled_batch(test)
    with torch.no_grad():
        scores, rows = _rows_encoded(model.t5.get_encoder(), model.predict, batch)
        hidden, attention_mask = model._encode(batch)  # every row encoded
        per_row = model._token_log_probs(hidden, attention_mask, model.item_tokens[batch[model.ITEM_ID]]).sum(-1)
    assert rows == [len(batch) // 101]
    assert scores.std() > 0.1
    assert torch.allclose(scores, per_row, atol=1e-5)


def test_sampled_evaluation_through_recbole_trainer(tiny_data_path, tiny_bert_path, tmp_path, monkeypatch):
    config, train, valid, test = _prepare("LAMIA", tiny_config(tiny_data_path, tiny_bert_path, tmp_path,
                                                               eval_args={**SPLIT, "mode": "uni100"}))
    model = LAMIA(config, train._dataset)
    trainer = Trainer(config, model)
    trainer.fit(train, valid, saved=False, show_progress=False)
    results = []
    for predict in (LAMIA.predict, lamia_per_row_predict):
        monkeypatch.setattr(LAMIA, "predict", predict)
        init_seed(config["seed"], config["reproducibility"])  # the same negatives for both
        results.append(trainer.evaluate(test, load_best_model=False, show_progress=False))
    assert results[0] == pytest.approx(results[1], abs=1e-6)
    for metric in METRICS:
        assert 0.0 <= results[0][metric] <= 1.0
    assert results[0]["recall@10"] > results[0]["recall@5"]  # a real ranking of 101 candidates, not all ties


def test_mixed_sampled_valid_and_full_test(tiny_data_path, tiny_bert_path, tmp_path):
    config, train, valid, test = _prepare("LAMIA", tiny_config(
        tiny_data_path, tiny_bert_path, tmp_path, eval_args={**SPLIT, "mode": {"valid": "pop100", "test": "full"}}))
    assert isinstance(valid, NegSampleEvalDataLoader) and isinstance(test, FullSortEvalDataLoader)
    trainer = Trainer(config, LAMIA(config, train._dataset))
    best_valid, valid_result = trainer.fit(train, valid, saved=False, show_progress=False)
    test_result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    assert math.isfinite(best_valid)
    for result in (valid_result, test_result):
        for metric in METRICS:
            assert 0.0 <= result[metric] <= 1.0


@pytest.mark.parametrize("model, mode, split", [("LAMIA", "pop100", SPLIT["split"]),
                                               ("SASRec", "uni100", {"RS": [0.6, 0.2, 0.2]})])
def test_batched_sampled_loader_gives_recboles_batches_draw_for_draw(tiny_data_path, tiny_bert_path, tmp_path,
                                                                     model, mode, split):
    """The plugin's one-pass ``collate_fn`` (compat.py) against RecBole's own, on the same sampler state: every
    field of every batch, the user index, the positives and the negatives drawn must be equal."""
    overrides = {"loss_type": "CE"} if model == "SASRec" else {}
    config, _, _, test = _prepare(model, tiny_config(tiny_data_path, tiny_bert_path, tmp_path, **overrides,
                                                     eval_args={**SPLIT, "split": split, "mode": mode},
                                                     eval_batch_size=1000))
    recbole_collate = NegSampleEvalDataLoader.collate_fn.recbole_collate_fn
    batches = []
    for collate in (NegSampleEvalDataLoader.collate_fn, recbole_collate):
        init_seed(config["seed"], config["reproducibility"])
        batches.append([collate(test, index) for index in torch.arange(test.sample_size).split(7).__iter__()])
    assert len(batches[0]) > 3
    if "RS" in split:  # users with several test positives, each with its own block of negatives
        assert any(len(batch[0]) > 7 * 101 for batch in batches[0])
    for ours, theirs in zip(*batches):
        assert sorted(ours[0].interaction) == sorted(theirs[0].interaction)  # RecBole concatenates via a set
        for field in theirs[0].interaction:
            assert ours[0][field].dtype == theirs[0][field].dtype, field
            assert torch.equal(ours[0][field], theirs[0][field]), field
        for mine, recboles in zip(ours[1:], theirs[1:]):
            assert torch.equal(mine, recboles)
    labels = batches[0][0][0][config["LABEL_FIELD"]]
    assert 0 < labels.sum() < len(labels)  # positives and negatives both present
