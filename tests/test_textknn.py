"""TextKNN, the content baseline: exact cosine ranking from item text embeddings, through RecBole's machinery."""

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.quick_start import run_recbole
from recbole.utils import init_seed

from recbole_lamia import TextKNN, TextKNNDataset
from recbole_lamia.utils.errors import UserInputError
from tests.conftest import TINY_DATASET, tiny_config


def _prepare(config_dict):
    config = Config(model="TextKNN", dataset=TINY_DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


@pytest.mark.parametrize("history_items", [1, 3])
def test_scores_are_cosine_to_the_recent_history_and_skip_seen_items(tiny_data_path, tiny_bert_path, tmp_path,
                                                                     history_items):
    config, dataset, (train, _, test) = _prepare(tiny_config(tiny_data_path, tiny_bert_path, tmp_path,
                                                             textknn_history_items=history_items))
    assert isinstance(dataset, TextKNNDataset)
    embeddings = dataset.item_text_embeddings
    assert embeddings.shape[0] == dataset.item_num and embeddings.dim() == 3
    model = TextKNN(config, train._dataset).eval()
    batch = next(iter(test))[0]
    scores = model.full_sort_predict(batch)
    vectors = torch.nn.functional.normalize(embeddings.flatten(1), dim=-1)
    for row in range(len(batch)):
        length = int(batch["item_length"][row])
        history = batch["item_id_list"][row, :length]
        query = vectors[history[-history_items:]].sum(0)
        expected = vectors @ query / query.norm()
        seen = torch.zeros(len(expected), dtype=torch.bool)
        seen[history] = True
        seen[0] = True
        assert torch.isinf(scores[row, seen]).all() and (scores[row, seen] < 0).all()
        torch.testing.assert_close(scores[row, ~seen], expected[~seen], atol=1e-5, rtol=1e-5)
    items = batch["item_id"]
    torch.testing.assert_close(model.predict(batch), scores.gather(1, items.unsqueeze(1)).squeeze(1))


def test_runs_through_recbole_and_reuses_the_cached_embeddings(tiny_data_path, tiny_bert_path, tmp_path):
    from recbole.utils import get_trainer

    from recbole_lamia.trainer import TextKNNTrainer

    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, epochs=50)  # as a dataset YAML may set
    config, _, (train, _, _) = _prepare(config_dict)
    assert get_trainer(config["MODEL_TYPE"], "TextKNN") is TextKNNTrainer
    assert TextKNNTrainer(config, TextKNN(config, train._dataset)).epochs == 1  # nothing to learn: one pass
    result = run_recbole(model="TextKNN", dataset=TINY_DATASET, config_dict=config_dict)
    for metric in ("recall@10", "ndcg@10"):
        assert 0.0 <= result["test_result"][metric] <= 1.0
    assert result["test_result"]["recall@10"] > 0  # some next item reads like the last one
    _, dataset, _ = _prepare(config_dict)
    assert dataset.text_embedding_report["embedding"]["cached"] is True


def test_bad_history_window_is_one_line(tiny_data_path, tiny_bert_path, tmp_path):
    config = Config(model="TextKNN", dataset=TINY_DATASET,
                    config_dict=tiny_config(tiny_data_path, tiny_bert_path, tmp_path, textknn_history_items=0))
    with pytest.raises(UserInputError, match="textknn_history_items"):
        TextKNN.check_config(config)


def test_cold_start_split_from_the_command_settings(tiny_data_path, tiny_bert_path, tmp_path):
    """``cold_start_ratio`` in a plain run (not the leaderboard): cold items leave training, and the result holds
    the metrics of the test cases that target them, for the content baseline and for an ID model alike."""
    from recbole_lamia.quick_start import format_summary, run

    results = {}
    for model in ("TextKNN", "SASRec"):
        config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, cold_start_ratio=0.25,
                                  loss_type="CE", epochs=1)
        results[model] = run(model, TINY_DATASET, config_dict=config_dict, saved=False)
    cases = {model: result["cold_test_cases"] for model, result in results.items()}
    assert cases["TextKNN"] == cases["SASRec"] > 0  # the same seeded items for every model
    for result in results.values():
        assert 0.0 <= result["cold_test_result"]["recall@10"] <= 1.0
    assert "cold_test: recall@10=" in format_summary("TextKNN", TINY_DATASET, results["TextKNN"])
    plain = run("TextKNN", TINY_DATASET, config_dict=tiny_config(tiny_data_path, tiny_bert_path, tmp_path),
                saved=False)
    assert "cold_test_result" not in plain
