"""The plugin's BERT4Rec is RecBole's: the same loss and gradients, computed on the masked positions only."""

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_seed

from recbole_lamia import BERT4Rec
from recbole_lamia.model.sequential_recommender.bert4rec import RecBoleBERT4Rec
from tests.conftest import TINY_DATASET, tiny_config


def _model_pair_and_batch(data_path, tmp_path, **overrides):
    settings = {"load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "train_batch_size": 64,
                "MAX_ITEM_LIST_LENGTH": 20, "mask_ratio": 0.6, "n_heads": 2, "loss_type": "CE", **overrides}
    config = Config(model="BERT4Rec", dataset=TINY_DATASET,
                    config_dict=tiny_config(data_path, None, tmp_path, **settings))
    init_seed(config["seed"], True)
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    batch = next(iter(train_data))
    theirs = RecBoleBERT4Rec(config, train_data.dataset)
    ours = BERT4Rec(config, train_data.dataset)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours, batch


def _loss_and_grads(model, batch, seed):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout draws in both forward passes
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_get_model_gives_the_plugin_bert4rec():
    assert get_model("BERT4Rec") is BERT4Rec
    assert RecBoleBERT4Rec.__module__ == "recbole.model.sequential_recommender.bert4rec"
    assert RecBoleBERT4Rec.calculate_loss is not BERT4Rec.calculate_loss


def test_ce_loss_and_gradients_equal_recboles(tiny_data_path, tmp_path):
    theirs, ours, batch = _model_pair_and_batch(tiny_data_path, tmp_path)
    masked_index = batch[theirs.MASK_INDEX]
    real = int((masked_index > 0).sum())
    assert 0 < real < masked_index.numel()  # the batch has padded slots, so skipping them is tested
    their_loss, their_grads = _loss_and_grads(theirs, batch, seed=7)
    our_loss, our_grads = _loss_and_grads(ours, batch, seed=7)
    torch.testing.assert_close(our_loss, their_loss, rtol=1e-5, atol=1e-6)
    assert their_grads.keys() == our_grads.keys()
    for name, grad in their_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_loss_depends_on_every_masked_position(tiny_data_path, tmp_path):
    """Dropping one real masked position changes the loss: the selection is not a no-op."""
    _, ours, batch = _model_pair_and_batch(tiny_data_path, tmp_path)
    ours.eval()
    with torch.no_grad():
        full = ours.calculate_loss(batch)
        masked_index = batch[ours.MASK_INDEX].clone()
        row, col = (masked_index > 0).nonzero()[0].tolist()
        masked_index[row, col] = 0
        batch.interaction[ours.MASK_INDEX] = masked_index
        fewer = ours.calculate_loss(batch)
    assert not torch.isclose(full, fewer)


def test_bpr_loss_stays_recboles(tiny_data_path, tmp_path):
    theirs, ours, batch = _model_pair_and_batch(tiny_data_path, tmp_path, loss_type="BPR")
    their_loss, _ = _loss_and_grads(theirs, batch, seed=3)
    our_loss, _ = _loss_and_grads(ours, batch, seed=3)
    torch.testing.assert_close(our_loss, their_loss)
