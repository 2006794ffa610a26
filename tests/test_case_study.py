"""Using a trained model: safe loading, recommend, export, aspect report, and their one-line errors."""

import glob
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data.interaction import Interaction

import run_recbole_lamia
from recbole_lamia import case_study
from recbole_lamia.utils.checkpoint import load_checkpoint, save_checkpoint
from recbole_lamia.utils.errors import CheckpointError, UserInputError
from tests.conftest import TINY_DATASET, tiny_config


@pytest.fixture(scope="module")
def trained(tiny_data_path, tiny_bert_path, tmp_path_factory):
    """A LAMIA checkpoint trained on the tiny dataset by RecBole's own run_recbole, and what loads from it."""
    from recbole.quick_start import run_recbole

    folder = tmp_path_factory.mktemp("trained")
    config_dict = tiny_config(tiny_data_path, tiny_bert_path, folder, epochs=2)
    run_recbole(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict, saved=True)
    checkpoint = glob.glob(str(folder / "saved" / "LAMIA-*.pth"))[0]
    config, model, dataset, *_ = case_study.load_data_and_model(checkpoint)
    return checkpoint, config, model, dataset


def test_load_data_and_model_restores_the_trained_model(trained):
    checkpoint, config, model, dataset = trained
    state = load_checkpoint(checkpoint)
    assert config["model"] == "LAMIA" and config["dataset"] == TINY_DATASET and not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor.cpu(), state["state_dict"][name].cpu()), name
    assert config["palette_size"] == 3 and config["codebook_size"] == 16  # the run's settings, not YAML defaults


def test_recommend_ranks_by_score_and_leaves_out_seen_items(trained, tiny_data_path):
    _, _, model, dataset = trained
    users = ["u3", "u10"]
    rows = case_study.recommend(model, dataset, users, k=5)
    histories = case_study.user_histories(dataset)
    item_index = dataset.field2token_id[dataset.iid_field]
    inter = pd.read_csv(os.path.join(tiny_data_path, TINY_DATASET, f"{TINY_DATASET}.inter"), sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    for user in users:
        mine = [r for r in rows if r["user_id"] == user]
        assert [r["rank"] for r in mine] == [1, 2, 3, 4, 5]
        assert all(a["score"] >= b["score"] for a, b in zip(mine, mine[1:]))
        in_file = inter[inter["user_id"] == user].sort_values("timestamp")["item_id"].tolist()
        assert [item_index[i] for i in in_file] == histories[dataset.field2token_id[dataset.uid_field][user]]
        assert not set(in_file) & {r["item_id"] for r in mine}
    # The top item is the model's best unseen item for the user's last MAX_ITEM_LIST_LENGTH items.
    user = dataset.field2token_id[dataset.uid_field]["u3"]
    history = histories[user][-dataset.config["MAX_ITEM_LIST_LENGTH"]:]
    seq = torch.zeros(1, dataset.config["MAX_ITEM_LIST_LENGTH"], dtype=torch.long)
    seq[0, : len(history)] = torch.tensor(history)
    batch = Interaction({model.USER_ID: torch.tensor([user]), model.ITEM_SEQ: seq,
                         model.ITEM_SEQ_LEN: torch.tensor([len(history)])})
    with torch.no_grad():
        scores = model.full_sort_predict(batch).view(-1)
    scores[[0] + histories[user]] = -float("inf")
    assert item_index[rows[0]["item_id"]] == int(scores.argmax())
    with_seen = case_study.recommend(model, dataset, ["u3"], k=dataset.item_num - 1, exclude_seen=False)
    assert len(with_seen) == dataset.item_num - 1  # every real item, seen ones included
    assert {item_index[r["item_id"]] for r in with_seen} >= set(histories[user])


def test_recommend_rejects_unknown_users_and_bad_k(trained):
    _, _, model, dataset = trained
    with pytest.raises(UserInputError, match="unknown user id 'nobody'"):
        case_study.recommend(model, dataset, ["u1", "nobody"], k=3)
    for bad in (0, -2, 1.5):
        with pytest.raises(UserInputError, match="k must be a positive integer"):
            case_study.recommend(model, dataset, ["u1"], k=bad)
    with pytest.raises(UserInputError, match=r"k \(\d+\) is larger than the number of items that can be"):
        case_study.recommend(model, dataset, ["u1"], k=dataset.item_num)


def test_export_writes_the_semantic_id_table(trained, tmp_path):
    _, _, _, dataset = trained
    path = str(tmp_path / "ids.csv")
    assert case_study.export_semantic_ids(dataset, path) == dataset.item_num - 1
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table.columns) == ["item_id", "aspect_1", "aspect_2", "aspect_3", "text"]
    assert np.array_equal(table[["aspect_1", "aspect_2", "aspect_3"]].to_numpy(), dataset.item_semantic_ids[1:].numpy())
    assert list(table["item_id"]) == list(dataset.field2id_token[dataset.iid_field][1:])
    row = table[table["item_id"] == "i3"].iloc[0]
    assert row["text"] == "Black perfume number 3. Nix. Beauty, Perfume"  # title, brand, categories


def test_distinctive_words_pick_what_sets_a_code_apart():
    texts = ["red lipstick matte", "pink lipstick gloss", "red lipstick", "blue shampoo", "green shampoo", "red cream"]
    frequency = __import__("collections").Counter(w for t in texts for w in case_study._words(t))
    assert case_study.distinctive_words(texts[:3], frequency, len(texts), top=1) == ["lipstick"]


def test_aspect_report_writes_markdown_and_png(trained, tmp_path):
    _, _, _, dataset = trained
    written = case_study.aspect_report(dataset, str(tmp_path / "report"), top_codes=2, title="tiny")
    markdown = open(written[0], encoding="utf-8").read()
    assert markdown.startswith("# tiny")
    for aspect in ("aspect_1", "aspect_2", "aspect_3"):
        assert f"## {aspect}" in markdown
    assert "| aspect | brand | categories | codes used |" in markdown  # titles: one per item, not shown
    assert "Not shown: title" in markdown
    assert written[1].endswith("aspects.png") and os.path.getsize(written[1]) > 1000
    # The biggest code of aspect 1 is reported with its true size.
    codes = dataset.item_semantic_ids[1:, 0].numpy()
    biggest = np.bincount(codes).max()
    section = markdown.split("## aspect_1")[1].split("## aspect_2")[0]
    assert f"| {biggest} |" in section


def test_cli_commands_on_a_checkpoint(trained, tmp_path, capsys):
    checkpoint = trained[0]
    assert run_recbole_lamia.main(["recommend", checkpoint, "--users", "u3", "--k", "3",
                                   "--output", str(tmp_path / "rec.csv")]) == 0
    out = capsys.readouterr().out
    assert "user u3" in out and len(pd.read_csv(tmp_path / "rec.csv")) == 3
    assert run_recbole_lamia.main(["recommend", "--k", "2", "--users", "u3", "u4", checkpoint]) == 0
    assert "user u4" in capsys.readouterr().out  # the checkpoint may come last, after the users
    assert run_recbole_lamia.main(["export", checkpoint, "--output", str(tmp_path / "ids.csv")]) == 0
    assert os.path.exists(tmp_path / "ids.csv")
    assert run_recbole_lamia.main(["aspects", checkpoint, "--output_dir", str(tmp_path / "asp")]) == 0
    assert os.path.exists(tmp_path / "asp" / "aspects.md")


@pytest.mark.parametrize("case", ["unknown_user", "k0", "missing", "corrupt", "text_file", "random_bytes",
                                  "other_model", "other_dataset", "stale_ids"])
def test_cli_bad_inputs_are_one_line_with_status_2(trained, tmp_path, capsys, case):
    checkpoint = trained[0]
    args = ["recommend", checkpoint, "--users", "u3"]
    expected = {"unknown_user": "unknown user id 'zz'", "k0": "k must be a positive integer",
                "missing": "checkpoint not found", "corrupt": "torn.pth is corrupt, truncated or not a checkpoint",
                "text_file": "notes.pth is corrupt, truncated or not a checkpoint",
                "random_bytes": "noise.pth: it is corrupt or holds Python objects",
                "other_model": "holds LAMIA", "other_dataset": "holds LAMIA trained on tiny-text",
                "stale_ids": "other semantic IDs"}[case]
    if case == "unknown_user":
        args = ["recommend", checkpoint, "--users", "zz"]
    elif case == "k0":
        args += ["--k", "0"]
    elif case == "missing":
        args[1] = str(tmp_path / "nope.pth")
    elif case == "corrupt":
        data = open(checkpoint, "rb").read()
        (tmp_path / "torn.pth").write_bytes(data[: len(data) // 2])
        args[1] = str(tmp_path / "torn.pth")
    elif case == "text_file":
        (tmp_path / "notes.pth").write_text("hello world\n")
        args[1] = str(tmp_path / "notes.pth")
    elif case == "random_bytes":
        (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(4096))
        args[1] = str(tmp_path / "noise.pth")
    elif case == "other_model":
        args += ["--model", "SASRec"]
    elif case == "other_dataset":
        args += ["--dataset", "ml-100k"]
    elif case == "stale_ids":
        state = load_checkpoint(checkpoint)
        state["semantic_ids"] = dict(state["semantic_ids"], sha256="0" * 64)
        save_checkpoint(state, str(tmp_path / "stale.pth"))
        args[1] = str(tmp_path / "stale.pth")
    assert run_recbole_lamia.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err


def test_loading_a_checkpoint_warns_of_no_key_it_wrote_itself(trained, caplog):
    from recbole_lamia.utils.checkpoint import config_from_checkpoint

    with caplog.at_level("WARNING"):
        config_from_checkpoint(load_checkpoint(trained[0]))
    assert not [r for r in caplog.records if "Unknown config key" in r.getMessage()]


def test_recommend_refuses_a_general_model_in_one_line(tiny_data_path, tiny_bert_path, tmp_path, capsys):
    from recbole.quick_start import run_recbole

    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, epochs=1,
                              train_neg_sample_args={"distribution": "uniform", "sample_num": 1})
    run_recbole(model="BPR", dataset=TINY_DATASET, config_dict=config_dict, saved=True)
    (checkpoint,) = glob.glob(str(tmp_path / "saved" / "BPR-*.pth"))
    assert run_recbole_lamia.main(["recommend", checkpoint, "--users", "u3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: recommend needs a sequential model") and "holds BPR, a general model" in err


def test_use_commands_find_a_relative_id_cache_from_another_folder(tiny_data_path, tiny_bert_path, tmp_path,
                                                                    monkeypatch):
    from recbole.quick_start import run_recbole

    from recbole_lamia.utils.checkpoint import training_folder

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    config_dict = tiny_config(tiny_data_path, tiny_bert_path, project, checkpoint_dir="runs/saved",
                              semantic_id_cache_dir="ids")
    run_recbole(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict, saved=True)
    (checkpoint,) = glob.glob(str(project / "runs" / "saved" / "LAMIA-*.pth"))
    assert training_folder(checkpoint, "runs/saved") == str(project)
    assert training_folder(checkpoint, "other") is None and training_folder(checkpoint, str(project)) is None
    monkeypatch.chdir(elsewhere)
    config, *_ = case_study.load_data_and_model(checkpoint)
    assert config["semantic_id_cache_dir"] == str(project / "ids")
    assert not os.path.exists(elsewhere / "ids")  # no second cache: the tokenizer did not run again


def test_planted_checkpoint_runs_no_code(tmp_path):
    """A .pth that would create a marker file when unpickled is refused by every loading path, in one line."""
    marker = tmp_path / "marker"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for protocol in (2, 4):
        planted = tmp_path / f"planted{protocol}.pth"
        torch.save({"format": "recbole_lamia.checkpoint.v1", "config": Planted()}, planted, pickle_protocol=protocol)
        import recbole.quick_start
        import recbole.trainer.trainer as trainer

        for load in (load_checkpoint, trainer.torch.load, case_study.load_data_and_model,
                     recbole.quick_start.load_data_and_model):
            with pytest.raises(CheckpointError, match="holds Python objects"):
                load(str(planted))
        proc = subprocess.run([sys.executable, "run_recbole_lamia.py", "export", str(planted)], capture_output=True,
                              text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "holds Python objects" in proc.stderr
    assert not marker.exists()


def test_a_checkpoint_cannot_switch_on_the_dataset_pickle(trained, tmp_path):
    """Settings that would make a run unpickle files are never taken from a checkpoint."""
    import pickle

    marker = tmp_path / "marker"

    class Planted:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    planted = tmp_path / "planted-dataset.pth"
    planted.write_bytes(pickle.dumps(Planted()))
    state = load_checkpoint(trained[0])
    state["config"]["final_config_dict"].update(save_dataset=True, dataset_save_path=str(planted),
                                                save_dataloaders=True, dataloaders_save_path=str(planted))
    save_checkpoint(state, str(tmp_path / "hostile.pth"))
    config, *_ = case_study.load_data_and_model(str(tmp_path / "hostile.pth"))
    assert not marker.exists()
    assert not config["save_dataset"] and config["dataset_save_path"] != str(planted)


def test_other_parameter_round_trips_in_the_safe_form():
    import scipy.sparse

    from recbole_lamia.utils.checkpoint import decode_other_parameter, encode_other_parameter

    values = {"module": torch.nn.Linear(2, 2), "array": np.arange(6.0).reshape(2, 3),
              "sparse": scipy.sparse.random(5, 4, density=0.5, format="csc", random_state=0), "alpha": 0.5,
              "tensor": torch.ones(3)}
    encoded = encode_other_parameter(values)
    assert "module" not in encoded  # a submodule: its weights are in the state dict
    decoded = decode_other_parameter(encoded)
    assert np.array_equal(decoded["array"], values["array"]) and decoded["alpha"] == 0.5
    assert decoded["sparse"].format == "csc" and (decoded["sparse"] != values["sparse"]).nnz == 0
    assert torch.equal(decoded["tensor"], values["tensor"])


def test_recbole_models_with_other_parameters_load_their_best_checkpoint(tiny_data_path, tiny_bert_path, tmp_path):
    """FDSA keeps its feature layer in other_parameter(); its run still evaluates its best checkpoint."""
    from recbole.quick_start import run_recbole

    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, selected_features=["brand"],
                              loss_type="CE", hidden_size=16, inner_size=32, n_layers=1, n_heads=2)
    result = run_recbole(model="FDSA", dataset=TINY_DATASET, config_dict=config_dict, saved=True)
    assert 0 <= result["test_result"]["ndcg@10"] <= 1
    (checkpoint,) = glob.glob(str(tmp_path / "saved" / "FDSA-*.pth"))
    assert load_checkpoint(checkpoint)["format"] == "recbole_lamia.checkpoint.v1"
    # recommend works for RecBole's own sequential models too
    _, model, dataset, *_ = case_study.load_data_and_model(checkpoint)
    rows = case_study.recommend(model, dataset, ["u3"], k=4)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and all(r["text"] for r in rows)


def test_nmi_above_chance_is_near_zero_for_unrelated_codes_and_high_for_copies():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 20, 3000)
    assert abs(case_study.nmi_above_chance(rng.integers(0, 500, 3000), labels)) < 0.05
    assert case_study.nmi_above_chance(labels * 7 + 3, labels) > 0.8
