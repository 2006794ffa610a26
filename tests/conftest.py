"""Shared fixtures: a tiny synthetic atomic dataset with item text, and tiny random text encoders."""

import os

import numpy as np
import pytest

import recbole_lamia  # noqa: F401  (registers the plugin)

TINY_DATASET = "tiny-text"
N_ITEMS, N_USERS = 240, 160
_COLOURS = ["red", "blue", "green", "black", "white", "pink", "gold", "silver"]
_KINDS = ["lipstick", "shampoo", "cream", "perfume", "mascara", "serum"]
_BRANDS = ["Acme", "Lumo", "Verra", "Nix", ""]


def write_tiny_dataset(root, name=TINY_DATASET, seed=0, item_fields=True):
    """Write ``<root>/<name>/<name>.inter`` and ``.item``: users browse one product kind at a time."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    kinds = [i % len(_KINDS) for i in range(N_ITEMS)]
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        if item_fields:
            f.write("item_id:token\ttitle:token\tbrand:token\tcategories:token_seq\n")
        else:
            f.write("item_id:token\tprice:float\n")
        for i in range(N_ITEMS):
            kind = _KINDS[kinds[i]]
            title = f"{_COLOURS[i % len(_COLOURS)].title()} {kind} number {i}" if i % 60 != 7 else ""
            brand = _BRANDS[i % len(_BRANDS)]
            if item_fields:
                f.write(f"i{i}\t{title}\t{brand}\t'Beauty', '{kind.title()}'\n")
            else:
                f.write(f"i{i}\t{i % 17}.5\n")
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(N_USERS):
            kind = rng.integers(len(_KINDS))
            pool = [i for i in range(N_ITEMS) if kinds[i] == kind]
            length = int(rng.integers(5, 12))
            items = rng.choice(pool, size=length, replace=False)
            for t, i in enumerate(items):
                f.write(f"u{u}\ti{i}\t{1000 + t}\n")
    return root


@pytest.fixture(scope="session")
def tiny_data_path(tmp_path_factory):
    return write_tiny_dataset(str(tmp_path_factory.mktemp("data")))


def _save_tiny_encoder(folder, kind):
    from transformers import AutoTokenizer, BertConfig, BertModel, OPTConfig, OPTModel

    from recbole_lamia.tokenizer.text_encoder import resolve_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder_path("all-MiniLM-L6-v2"), local_files_only=True)
    import torch

    torch.manual_seed(0)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    elif kind == "mpnet":
        from transformers import MPNetConfig, MPNetModel

        model = MPNetModel(MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=66,
                                       relative_attention_num_buckets=32, pad_token_id=tokenizer.pad_token_id))
        with torch.no_grad():  # a trained MPNet's position bias is large; the random init's is not
            model.encoder.relative_attention_bias.weight.normal_(0.0, 2.0)
    else:
        model = OPTModel(OPTConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                   ffn_dim=64, num_attention_heads=2, max_position_embeddings=64,
                                   word_embed_proj_dim=32, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory):
    return _save_tiny_encoder(str(tmp_path_factory.mktemp("tiny-bert")), "bert")


@pytest.fixture(scope="session")
def tiny_mpnet_path(tmp_path_factory):
    return _save_tiny_encoder(str(tmp_path_factory.mktemp("tiny-mpnet")), "mpnet")


@pytest.fixture(scope="session")
def tiny_opt_path(tmp_path_factory):
    return _save_tiny_encoder(str(tmp_path_factory.mktemp("tiny-opt")), "opt")


def tiny_config(data_path, encoder_path, tmp_path, **overrides):
    """A config_dict for fast runs on the tiny dataset."""
    config = {
        "data_path": data_path,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "brand", "categories"]},
        "item_text_fields": ["title", "brand", "categories"],
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [5, 10],
        "valid_metric": "NDCG@10",
        "train_neg_sample_args": None,
        "text_encoder": encoder_path,
        "max_text_length": 16,
        "palette_size": 3,
        "palette_dim": 8,
        "palette_tune_layers": 1,
        "palette_epochs": 1,
        "palette_batch_size": 64,
        "codebook_size": 16,
        "hidden_size": 16,
        "inner_size": 32,
        "n_layers": 1,
        "MAX_ITEM_LIST_LENGTH": 10,
        "epochs": 1,
        "train_batch_size": 256,
        "eval_batch_size": 256,
        "semantic_id_cache_dir": str(tmp_path / "semantic_ids"),
        "checkpoint_dir": str(tmp_path / "saved"),
        "show_progress": False,
        "state": "WARNING",
        "use_gpu": False,
        "seed": 7,
    }
    config.update(overrides)
    return config
