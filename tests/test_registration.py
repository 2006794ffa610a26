"""RecBole's own entry points see the plugin; the compatibility shims are narrow and work."""

import logging
import subprocess
import sys

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset
from recbole.utils import get_model

import recbole_lamia
from recbole_lamia import LAMIA, LAMIADataset
from recbole_lamia.compat import patch_recbole_checkpoint_loading
from recbole_lamia.utils.config_check import unknown_plugin_like_keys
from tests.conftest import TINY_DATASET, tiny_config


def test_get_model_returns_plugin_class():
    assert get_model("LAMIA") is LAMIA
    assert "LAMIA" in recbole_lamia.registered_models()


def test_recbole_builtin_models_still_resolve():
    from recbole.model.sequential_recommender.sasrec import SASRec

    assert get_model("SASRec") is SASRec


def test_create_dataset_builds_plugin_dataset(tiny_data_path, tiny_bert_path, tmp_path):
    config = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=tiny_config(tiny_data_path, tiny_bert_path,
                                                                                 tmp_path))
    assert isinstance(create_dataset(config), LAMIADataset)


def test_plugin_yaml_defaults_apply_and_user_values_override():
    config = Config(model="LAMIA", dataset="ml-100k", config_dict={"palette_dim": 12})
    assert config["codebook_size"] == 256  # properties/LAMIA.yaml
    assert config["quantizer"] == "pq"  # properties/ml-100k/LAMIA.yaml beats it
    assert config["item_text_fields"] == ["movie_title", "release_year", "class"]  # properties/ml-100k.yaml
    assert config["palette_dim"] == 12  # config_dict beats plugin YAML
    sasrec = Config(model="SASRec", dataset="ml-100k", config_dict={})
    assert sasrec["eval_args"]["split"] == {"LS": "valid_and_test"}  # dataset YAML applies to RecBole models
    assert "palette_size" not in sasrec  # model YAML does not


def test_per_dataset_model_yaml_applies_to_that_model_only(tmp_path, monkeypatch):
    import shutil

    import recbole_lamia.utils.registration as registration

    properties = tmp_path / "properties"
    shutil.copytree(registration.PROPERTIES_DIR, properties)
    (properties / "ml-100k").mkdir(exist_ok=True)
    (properties / "ml-100k" / "LAMIA.yaml").write_text("codebook_size: 99\npalette_dim: 7\n")
    monkeypatch.setattr(registration, "PROPERTIES_DIR", str(properties))
    lamia = Config(model="LAMIA", dataset="ml-100k", config_dict={"palette_dim": 12})
    assert lamia["codebook_size"] == 99  # beats properties/LAMIA.yaml
    assert lamia["palette_dim"] == 12  # config_dict still beats it
    assert lamia["item_text_fields"] == ["movie_title", "release_year", "class"]  # dataset YAML still read
    tiger = Config(model="TIGER", dataset="ml-100k", config_dict={})
    assert tiger["codebook_size"] == 256  # another model on the dataset does not see it


def test_shipped_per_dataset_files_reach_recbole_models_on_that_dataset_only(tmp_path):
    beauty = {"data_path": str(tmp_path)}  # no shipped copy is unpacked for a Config alone
    bert = Config(model="BERT4Rec", dataset="amazon-beauty", config_dict=beauty)
    assert (bert["mask_ratio"], bert["hidden_dropout_prob"]) == (0.6, 0.5)  # properties/amazon-beauty/BERT4Rec.yaml
    assert Config(model="BERT4Rec", dataset="ml-100k", config_dict={})["mask_ratio"] == 0.2  # RecBole's default
    assert "mask_ratio" not in Config(model="SASRec", dataset="amazon-beauty", config_dict=beauty)
    assert Config(model="LAMIA", dataset="amazon-beauty", config_dict=beauty)["quantizer"] == "multiscale_kmeans"


def test_palette_settings_under_a_sentence_embedding_are_reported_as_ignored(caplog):
    from recbole_lamia.tokenizer.item_tokenizer import tokenizer_params
    from recbole_lamia.utils.config_check import warn_ignored_tokenizer_keys

    # ml-100k's LAMIA default is one sentence embedding + PQ: a palette setting there would silently do nothing.
    config = Config(model="LAMIA", dataset="ml-100k", config_dict={"palette_size": 8, "use_contrastive": False})
    with caplog.at_level(logging.WARNING):
        assert warn_ignored_tokenizer_keys(config, tokenizer_params(config)) == ["palette_size", "use_contrastive"]
    assert "palette_size, use_contrastive have no effect with item_embedding: sentence" in caplog.text
    palette = Config(model="LAMIA", dataset="ml-100k", config_dict={"palette_size": 8, "item_embedding": "palette",
                                                                    "quantizer": "kmeans"})
    # pq_subspaces comes from the plugin's file, not from the user: not reported
    assert warn_ignored_tokenizer_keys(palette, tokenizer_params(palette)) == []


def test_typo_detection_only_flags_plugin_like_keys():
    config = Config(model="LAMIA", dataset="ml-100k", config_dict={"palete_size": 3, "learning_rate": 0.01,
                                                                   "totally_unrelated_key": 1})
    assert unknown_plugin_like_keys(config) == [("palete_size", "palette_size")]


def test_checkpoint_shim_writes_and_reads_only_safe_checkpoints(tmp_path):
    import os

    import recbole.quick_start.quick_start as quick_start
    import recbole.trainer.trainer as trainer

    from recbole_lamia.utils.errors import CheckpointError

    patch_recbole_checkpoint_loading()
    patch_recbole_checkpoint_loading()  # idempotent
    assert torch.load is not trainer.torch.load  # RecBole's trainer uses the proxy
    assert trainer.torch.Tensor is torch.Tensor and trainer.torch.no_grad is torch.no_grad
    assert trainer.Trainer._save_checkpoint._recbole_lamia
    assert quick_start.load_data_and_model._recbole_lamia
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    # A checkpoint pickling a non-tensor object, as RecBole's own format does with its Config: refused.
    file = tmp_path / "ckpt.pth"
    torch.save({"config": Config(model="LAMIA", dataset="ml-100k"), "state_dict": {}}, file, pickle_protocol=4)
    with pytest.raises(CheckpointError, match="holds Python objects"):
        trainer.torch.load(file)


def test_cli_unknown_model_lists_models_without_traceback():
    proc = subprocess.run([sys.executable, "run_recbole_lamia.py", "--model=NoSuchModel"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert "unknown model 'NoSuchModel'" in proc.stderr
    assert "LAMIA" in proc.stderr and "SASRec" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_load_data_and_model_reads_a_saved_lamia_checkpoint(tiny_data_path, tiny_bert_path, tmp_path):
    from recbole.quick_start import load_data_and_model, run_recbole

    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path)
    run_recbole(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict, saved=True)
    import glob

    checkpoint = glob.glob(str(tmp_path / "saved" / "LAMIA-*.pth"))[0]
    config, model, dataset, *_ = load_data_and_model(checkpoint)
    assert isinstance(model, LAMIA) and config["model"] == "LAMIA"


def test_recbole_anomaly_detection_is_switched_off():
    from recbole_lamia.compat import disable_recbole_anomaly_detection

    torch.autograd.set_detect_anomaly(True)  # what importing RecBole's sine.py does
    disable_recbole_anomaly_detection()
    assert not torch.is_anomaly_enabled()
    get_model("SASRec")
    assert not torch.is_anomaly_enabled()


def test_planted_saved_dataset_and_dataloaders_are_not_unpickled(tiny_data_path, tiny_bert_path, tmp_path, caplog):
    import pickle

    from recbole.data import data_preparation

    marker = tmp_path / "marker"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path)
    saved = tmp_path / "saved"
    saved.mkdir(exist_ok=True)
    for name in (f"{TINY_DATASET}-LAMIADataset.pth", f"{TINY_DATASET}-for-LAMIA-dataloader.pth"):
        (saved / name).write_bytes(pickle.dumps(Planted()))
    config = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict)
    dataset = create_dataset(config)
    assert isinstance(dataset, LAMIADataset) and "Ignoring the saved dataset" in caplog.text
    data_preparation(config, dataset)
    assert not marker.exists()
    # A run that opts in (save_dataset) reads the file: the user chose to trust it.
    opted_in = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=dict(config_dict, save_dataset=True))
    with pytest.raises(AttributeError):
        create_dataset(opted_in)  # the planted object (a file handle) is no dataset: it has no .config
    assert marker.exists()


def test_saved_dataset_with_other_tokenizer_settings_is_rebuilt(tiny_data_path, tiny_bert_path, tmp_path, caplog):
    config_dict = dict(tiny_config(tiny_data_path, tiny_bert_path, tmp_path), save_dataset=True)
    first = create_dataset(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict))
    assert first.item_semantic_ids.shape[1] == 3
    caplog.set_level(logging.INFO)
    caplog.clear()
    same = create_dataset(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict))
    assert "Load filtered dataset" in caplog.text and "other tokenizer settings" not in caplog.text
    assert torch.equal(same.item_semantic_ids, first.item_semantic_ids)
    other = create_dataset(Config(model="LAMIA", dataset=TINY_DATASET, config_dict=dict(config_dict, palette_size=2)))
    assert "other tokenizer settings" in caplog.text and other.tokenizer_params["palette_size"] == 2
