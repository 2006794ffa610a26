"""Every bad input of the training command ends in one line and exit status 2, before any data is read."""

import os
import subprocess
import sys

import pytest
from recbole.config import Config
from recbole.data import create_dataset

import run_recbole_lamia
from recbole_lamia.utils.errors import UserInputError
from tests.conftest import TINY_DATASET, tiny_config, write_tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (arguments, a fragment of the one-line message); the README's bad-input table lists the same cases.
BAD_INPUTS = [
    (["--model=NoSuchModel"], "unknown model 'NoSuchModel'"),
    (["--dataset=does-not-exist"], "dataset 'does-not-exist' not found"),
    (["--config_files=nope.yaml"], "config file not found: nope.yaml"),
    (["--MAX_ITEM_LIST_LENGTH=0"], "MAX_ITEM_LIST_LENGTH must be an integer >= 1, got 0"),
    (["--learning_rate=-1"], "learning_rate must be a number > 0, got -1"),
    (["--epochs=-3"], "epochs must be an integer >= 0, got -3"),
    (["--train_batch_size=0"], "train_batch_size must be an integer >= 1, got 0"),
    (["--hidden_size=63"], "hidden_size must be a positive multiple of n_heads (2), got 63"),
    (["--hidden_dropout_prob=1.2"], "hidden_dropout_prob must be a probability in [0, 1), got 1.2"),
    (["--topk=0"], "topk must be a positive integer"),
    (["--valid_metric=NDCG@20"], "valid_metric must be one of metrics"),
    (["--valid_metric=NDCG"], "valid_metric must be one of metrics ['Recall', 'NDCG'] at one of topk [5, 10]"),
    (["--seed=abc"], "seed must be an integer, got 'abc'"),
    (["--topk=[10,abc]"], "The topk [[10,abc]] must be a integer, list"),
    (["--palette_size=40"], "palette_size must be an integer in [1, 16], got 40"),
    (["--codebook_size=1"], "codebook_size must be an integer >= 2, got 1"),
    (["--quantizer=nope"], "Unknown quantizer 'nope'"),
    (["--quantizer=multiscale_kmeans", "--multiscale_kmeans_coarse_sizes=[4096]"],
     "multiscale_kmeans_coarse_sizes [4096] must be smaller than codebook_size"),
    (["--item_label_smoothing=1.5"], "item_label_smoothing must be in [0, 1), got 1.5"),
    (["--item_loss_weight=-1"], "item_loss_weight must be >= 0"),
    (["--item_loss_negatives=some"], "item_loss_negatives must be 'all' or 'trained', got 'some'"),
    (["--popularity_prior_weight=-1"], "popularity_prior_weight must be a number >= 0, got -1"),
    (["--beam_search=True", "--beam_size=3"], "beam_size (3) must be >= the largest topk (10)"),
    (["--model=TIGER", "--beam_size=5"], "beam_size (5) must be >= the largest topk (10)"),
    (["--text_encoder=/no/such/encoder"], "text_encoder '/no/such/encoder' is neither a local folder"),
    (["--item_text_fields=[movie_title,nope]"], "item_text_fields ['nope'] are not in"),
    (["--cold_start_ratio=1.5"], "cold_start_ratio must be a number in [0, 1), got 1.5"),
    (["--model=TextKNN", "--textknn_history_items=0"], "textknn_history_items must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_training_input_is_one_line_with_status_2(args, message, monkeypatch, capsys):
    argv = ["--dataset=ml-100k", *args] if not any(a.startswith("--dataset") for a in args) else list(args)
    monkeypatch.setattr(sys, "argv", ["run_recbole_lamia.py", *argv])  # RecBole's Config reads sys.argv
    assert run_recbole_lamia.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_split_zip_encoder_without_its_parts_is_one_line_with_status_2(monkeypatch, capsys):
    from recbole_lamia.tokenizer import text_encoder

    spec = text_encoder.SplitZipEncoder(("no-such-part-001", "no-such-part-002"), "model", "0" * 64, ("config.json",))
    monkeypatch.setitem(text_encoder._SPLIT_ZIP_ENCODERS, "all-mpnet-base-v2", spec)  # as on a machine without them
    argv = ["--dataset=ml-100k", "--text_encoder=all-mpnet-base-v2"]
    monkeypatch.setattr(sys, "argv", ["run_recbole_lamia.py", *argv])
    assert run_recbole_lamia.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "needs the packages no-such-part-001 no-such-part-002" in err
    assert "\n" not in err


@pytest.mark.parametrize("metric,valid", [("NDCG@10", True), ("NDCG", False), ("GAUC", True), ("GAUC@10", False),
                                          ("ItemCoverage@5", True), ("ItemCoverage", False)])
def test_valid_metric_has_a_cut_off_exactly_when_recbole_reports_one(metric, valid):
    from recbole_lamia.utils.config_check import validate_config

    config = Config(model="SASRec", dataset="ml-100k", config_dict={
        "metrics": ["NDCG", "GAUC", "ItemCoverage"], "topk": [5, 10], "valid_metric": metric,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}})
    if valid:
        validate_config(config)
    else:
        with pytest.raises(UserInputError, match="valid_metric must be one of metrics"):
            validate_config(config)


def test_config_file_that_is_not_utf8_is_one_line(tmp_path, monkeypatch, capsys):
    config_file = tmp_path / "latin1.yaml"
    config_file.write_bytes("epochs: 2  # caf\xe9\n".encode("latin-1"))
    argv = ["--dataset=ml-100k", f"--config_files={config_file}"]
    monkeypatch.setattr(sys, "argv", ["run_recbole_lamia.py", *argv])
    assert run_recbole_lamia.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


@pytest.mark.parametrize("text", ["", "# only a comment\n", "just a string\n", "- a\n- list\n"])
def test_config_file_without_a_mapping_is_one_line(text, tmp_path, monkeypatch, capsys):
    config_file = tmp_path / "settings.yaml"
    config_file.write_text(text)
    argv = ["--dataset=ml-100k", f"--config_files={config_file}"]
    monkeypatch.setattr(sys, "argv", ["run_recbole_lamia.py", *argv])
    assert run_recbole_lamia.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: config file {config_file} holds no settings") and "\n" not in err


def test_bad_yaml_config_file_is_one_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    argv = ["--dataset=ml-100k", f"--config_files={bad}"]
    monkeypatch.setattr(sys, "argv", ["run_recbole_lamia.py", *argv])
    assert run_recbole_lamia.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: a config file is not valid YAML") and "\n" not in err


def test_debug_flag_keeps_the_traceback():
    proc = subprocess.run([sys.executable, "run_recbole_lamia.py", "--dataset=ml-100k", "--learning_rate=-1",
                           "--debug"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UserInputError" in proc.stderr


def test_all_empty_item_text_is_refused(tmp_path, tiny_bert_path):
    root = write_tiny_dataset(str(tmp_path / "data"))
    item_file = os.path.join(root, TINY_DATASET, f"{TINY_DATASET}.item")
    lines = open(item_file).read().splitlines()
    with open(item_file, "w") as f:
        f.write("\n".join([lines[0]] + [line.split("\t")[0] + "\t\t\t" for line in lines[1:]]) + "\n")
    config = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=tiny_config(root, tiny_bert_path, tmp_path))
    with pytest.raises(UserInputError, match="every item's text is empty"):
        create_dataset(config)


def test_unset_item_text_fields_read_the_text_like_fields(tiny_data_path, tiny_bert_path, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    config = Config(model="LAMIA", dataset=TINY_DATASET,
                    config_dict=tiny_config(tiny_data_path, tiny_bert_path, tmp_path, item_text_fields=None))
    dataset = create_dataset(config)
    assert "reading the item's text from ['title', 'brand', 'categories']" in caplog.text
    explicit = create_dataset(Config(model="LAMIA", dataset=TINY_DATASET,
                                     config_dict=tiny_config(tiny_data_path, tiny_bert_path, tmp_path)))
    assert (dataset.item_semantic_ids == explicit.item_semantic_ids).all()  # the same text, the same cached IDs


def test_interactions_of_items_without_a_row_are_counted(tmp_path, tiny_bert_path, caplog):
    root = write_tiny_dataset(str(tmp_path / "data"))
    item_file = os.path.join(root, TINY_DATASET, f"{TINY_DATASET}.item")
    lines = open(item_file).read().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if not line.startswith(("i1\t", "i2\t"))]
    open(item_file, "w").write("\n".join(kept) + "\n")
    inter = open(os.path.join(root, TINY_DATASET, f"{TINY_DATASET}.inter")).read().splitlines()[1:]
    expected = sum(1 for line in inter if line.split("\t")[1] in ("i1", "i2"))
    assert expected > 0
    config = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=tiny_config(root, tiny_bert_path, tmp_path))
    create_dataset(config)
    assert f"{expected} of {len(inter)} interactions of [{TINY_DATASET}] were dropped" in caplog.text
