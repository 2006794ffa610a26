"""Leaderboard on the tiny dataset: outputs, failing rows, crash and resume, budget, and the cold-start split.

Only one test starts a row in its own process (the default); the others run rows in-process
(``isolate=False``), which takes the same code path from the phase spec onwards but skips the ~15 s
interpreter start of each child.
"""

import csv
import json
import math
import os
from collections import defaultdict

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

import recbole_lamia.leaderboard.trainer as lb_trainer
from recbole_lamia.data.cold_start import (
    cold_set_hash,
    cold_start_build,
    cold_test_loader,
    eligible_items,
    select_cold_items,
)
from recbole_lamia.leaderboard import RowSpec, run_leaderboard
from tests.conftest import TINY_DATASET, tiny_config


def _overrides(data_path, encoder_path, tmp_path, **extra):
    config = tiny_config(data_path, encoder_path, tmp_path, **extra)
    for key in ("data_path", "seed", "checkpoint_dir"):  # the leaderboard sets these itself
        config.pop(key)
    return config


def _run(tmp_path, data_path, overrides, messages=None, **kwargs):
    kwargs.setdefault("seed", 7)
    kwargs.setdefault("isolate", False)
    kwargs.setdefault("threads", 1)  # 2 busy cores: one thread per row is ~10x faster than two
    log = messages.append if messages is not None else (lambda message: None)
    return run_leaderboard(TINY_DATASET, data_path=data_path, overrides=overrides,
                           out_dir=str(tmp_path / "results"), checkpoint_dir=str(tmp_path / "ckpt"), log=log, **kwargs)


def _csv_rows(tmp_path):
    with open(tmp_path / "results" / f"{TINY_DATASET}.csv", newline="", encoding="utf-8") as f:
        return {row["row"]: row for row in csv.DictReader(f)}


def _finite_unit(value):
    number = float(value)
    return math.isfinite(number) and 0.0 <= number <= 1.0


def test_rows_outputs_and_a_failing_row(tiny_data_path, tiny_bert_path, tmp_path):
    rows = {"Broken": RowSpec("LAMIA", {"quantizer": "no_such_quantizer"})}
    messages = []
    _run(tmp_path, tiny_data_path, _overrides(tiny_data_path, tiny_bert_path, tmp_path), messages,
         models=["LAMIA", "Broken", "SASRec"], rows=rows, cold_start_mode="shared")
    out = tmp_path / "results"
    for ext in ("csv", "md", "png"):
        assert (out / f"{TINY_DATASET}.{ext}").exists()
    assert (out / f"{TINY_DATASET}.png").read_bytes()[:4] == b"\x89PNG"
    table = _csv_rows(tmp_path)
    assert list(table) == ["LAMIA", "Broken", "SASRec"]

    for name in ("LAMIA", "SASRec"):
        row = table[name]
        assert row["status"] == "max_epochs" and row["error"] == ""
        for key in ("test_recall@5", "test_recall@10", "test_ndcg@5", "test_ndcg@10", "best_valid_ndcg@10",
                    "cold_recall@10", "cold_ndcg@10"):
            assert _finite_unit(row[key]), (name, key, row[key])
        assert row["epochs_run"] == "1" and float(row["train_seconds"]) > 0 and float(row["epoch_seconds"]) > 0
        assert float(row["eval_seconds"]) >= 0 and int(row["parameters"]) > 0 and float(row["peak_rss_gb"]) > 0
        assert row["device"].startswith("cpu") and int(row["cold_test_cases"]) > 0
    assert table["LAMIA"]["cold_set"] == table["SASRec"]["cold_set"]  # one cold split for every row
    lamia = table["LAMIA"]
    assert float(lamia["tokenizer_seconds"]) > 0 and 0 < float(lamia["code_usage"]) <= 1
    assert 0 <= float(lamia["collision_rate"]) < 1 and lamia["semantic_id_length"] == "3"
    assert table["SASRec"]["tokenizer_seconds"] == ""

    broken = table["Broken"]
    assert broken["status"] == "error" and "no_such_quantizer" in broken["error"]
    markdown = (out / f"{TINY_DATASET}.md").read_text()
    assert "## Errors" in markdown and all(f"| {name} |" in markdown for name in table)
    assert any("LAMIA [main] epoch 1/1" in m for m in messages)  # progress: row, epoch, time left
    assert any("left <=" in m for m in messages)


def test_crashed_row_is_recorded_then_continues_from_its_last_epoch(tiny_data_path, tiny_bert_path, tmp_path):
    overrides = _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=2)
    messages = []
    # In its own process, killed (SIGKILL) right after epoch 1 of 2 was saved.
    _run(tmp_path, tiny_data_path, overrides, messages, models=["SASRec"], isolate=True, cold_start_ratio=0,
         interrupt_after_epoch={"SASRec": 0})
    row = _csv_rows(tmp_path)["SASRec"]
    assert row["status"] == "error" and "SIGKILL" in row["error"] and row["process"] == "subprocess"
    assert any("SASRec [main] epoch 1/2" in m for m in messages)  # the child's progress reaches the parent
    assert os.path.exists(tmp_path / "ckpt" / TINY_DATASET / "SASRec" / "main" / "last.pth")

    messages.clear()
    _run(tmp_path, tiny_data_path, overrides, messages, models=["SASRec"], cold_start_ratio=0)
    row = _csv_rows(tmp_path)["SASRec"]
    assert row["status"] == "max_epochs" and row["error"] == ""
    assert row["resumed_from_epoch"] == "1" and row["epochs_run"] == "2"  # trained epoch 2 only
    assert any("resuming at epoch 2" in m for m in messages)
    assert not any("epoch 1/2" in m for m in messages)
    assert _finite_unit(row["test_ndcg@10"])
    # ... and ends as the uninterrupted run: the RNG states and the training loader's shuffling are restored.
    _run(tmp_path / "whole", tiny_data_path, overrides, models=["SASRec"], cold_start_ratio=0)
    whole = _csv_rows(tmp_path / "whole")["SASRec"]
    for metric in ("best_valid_ndcg@10", "test_ndcg@10", "test_recall@10"):
        assert row[metric] == whole[metric], metric

    messages.clear()
    _run(tmp_path, tiny_data_path, overrides, messages, models=["SASRec"], cold_start_ratio=0)
    assert _csv_rows(tmp_path)["SASRec"]["finished_at"] == row["finished_at"]  # finished rows are kept
    assert any("finished earlier" in m for m in messages)

    # A row made under the older fingerprint scheme (YAML file bytes) is kept, and moved to the current hash:
    # its table row, result.json, spec.json and last.pth (which --resume checks).
    from recbole_lamia.leaderboard.ranks import load_phase
    from recbole_lamia.leaderboard.report import upsert_row
    from recbole_lamia.leaderboard.runner import accepted_fingerprints
    from recbole_lamia.utils.checkpoint import load_checkpoint, save_checkpoint

    run_dir = tmp_path / "ckpt" / TINY_DATASET / "SASRec" / "main"
    spec = json.loads((run_dir / "spec.json").read_text())
    current, older = accepted_fingerprints(spec["model"], spec["dataset"], spec["phase"], spec["config_dict"],
                                           spec["config_files"], spec["cold_start"])
    assert spec["fingerprint"] == current and row["config_hash"] == current[:10]

    def fingerprints():
        last = load_checkpoint(run_dir / "last.pth")["leaderboard"]["fingerprint"]
        return (json.loads((run_dir / "result.json").read_text())["fingerprint"],
                json.loads((run_dir / "spec.json").read_text())["fingerprint"], last)

    def make_older():
        result = json.loads((run_dir / "result.json").read_text())
        (run_dir / "result.json").write_text(json.dumps(dict(result, fingerprint=older)))
        (run_dir / "spec.json").write_text(json.dumps(dict(spec, fingerprint=older, accepted_fingerprints=[older])))
        state = load_checkpoint(run_dir / "last.pth")
        state["leaderboard"]["fingerprint"] = older
        save_checkpoint(state, run_dir / "last.pth")
        assert fingerprints() == (older, older, older)

    make_older()
    upsert_row(str(tmp_path / "results"), TINY_DATASET, dict(row, config_hash=older[:10]), {})
    messages.clear()
    _run(tmp_path, tiny_data_path, overrides, messages, models=["SASRec"], cold_start_ratio=0)
    assert not any("another configuration" in m for m in messages)
    assert _csv_rows(tmp_path)["SASRec"]["config_hash"] == current[:10]
    assert fingerprints() == (current, current, current)
    # A phase result found when the table has no row for it is reused and moved to the current hash too.
    make_older()
    os.remove(tmp_path / "results" / f"{TINY_DATASET}.csv")
    messages.clear()
    _run(tmp_path, tiny_data_path, overrides, messages, models=["SASRec"], cold_start_ratio=0)
    assert any("reusing its result" in m for m in messages)
    assert fingerprints() == (current, current, current)
    assert _csv_rows(tmp_path)["SASRec"]["test_ndcg@10"] == row["test_ndcg@10"]
    assert load_phase(str(run_dir)).result["fingerprint"] == current  # the analyses still accept the phase


def test_budget_stop_resume_and_rerun(tiny_data_path, tiny_bert_path, tmp_path, monkeypatch):
    _run(tmp_path, tiny_data_path, _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=3),
         models=["SASRec"], cold_start_ratio=0, max_minutes=1e-5)
    row = _csv_rows(tmp_path)["SASRec"]
    assert row["status"] == "budget" and row["epochs_run"] == "1" and row["max_epochs"] == "3"

    # --resume of a finished row whose process is killed (SIGKILL, no result written) after its 2nd epoch was
    # saved: the budget row keeps its figures and result.json, and says the continuation failed.
    result_file = tmp_path / "ckpt" / TINY_DATASET / "SASRec" / "main" / "result.json"
    kept_result = result_file.read_text()
    messages = []
    _run(tmp_path, tiny_data_path, _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=3), messages,
         models=["SASRec"], cold_start_ratio=0, resume=["SASRec"], interrupt_after_epoch={"SASRec": 1},
         isolate=True)
    after = _csv_rows(tmp_path)["SASRec"]
    assert after["error"].startswith("--resume failed") and "SIGKILL" in after["error"]
    assert {k: v for k, v in after.items() if k != "error"} == {k: v for k, v in row.items() if k != "error"}
    assert result_file.read_text() == kept_result and not os.path.exists(f"{result_file}.kept")
    assert any("the earlier budget row is kept" in m for m in messages)
    # A leaderboard process killed while its result was set aside: the next run puts it back.
    os.replace(result_file, f"{result_file}.kept")
    _run(tmp_path, tiny_data_path, _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=3),
         models=["SASRec"], cold_start_ratio=0)
    assert result_file.read_text() == kept_result and not os.path.exists(f"{result_file}.kept")

    # --resume reopens it again: epochs=3 and no budget -> one more epoch from the 2 saved ones.
    overrides = _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=3)
    _run(tmp_path, tiny_data_path, overrides, models=["SASRec"], cold_start_ratio=0, resume=["SASRec"])
    row = _csv_rows(tmp_path)["SASRec"]
    assert row["status"] == "max_epochs" and row["resumed_from_epoch"] == "2" and row["epochs_run"] == "3"
    assert row["error"] == ""

    # --rerun starts from scratch; validation that stops at the 2nd evaluation is recorded as early_stopped.
    calls = []

    def stop_at_second_evaluation(value, best, cur_step, max_step, bigger=True):
        calls.append(value)
        return (value, 0, False, True) if len(calls) == 1 else (best, max_step + 1, True, False)

    monkeypatch.setattr(lb_trainer, "early_stopping", stop_at_second_evaluation)
    overrides = _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=3, stopping_step=1)
    messages = []
    _run(tmp_path, tiny_data_path, overrides, messages, models=["SASRec"], cold_start_ratio=0, rerun=["SASRec"])
    row = _csv_rows(tmp_path)["SASRec"]
    assert row["resumed_from_epoch"] == "" and row["status"] == "early_stopped"
    assert row["epochs_run"] == "2" and row["best_epoch"] == "1"
    # The patience shown counts to the validation that stops the run (stopping_step + 1, RecBole's rule below).
    assert any("epoch 2/3" in m and "patience 2/2" in m and "[early_stopped]" in m for m in messages), messages


def test_recbole_stops_at_the_validation_after_stopping_step_without_gain():
    """The rule the leaderboard's progress line assumes: with stopping_step = s, RecBole's early_stopping stops
    at the (s + 1)-th validation in a row without a gain."""
    from recbole.utils import early_stopping

    best, cur_step, stops = 1.0, 0, []
    for _ in range(3):
        best, cur_step, stop, _ = early_stopping(0.5, best, cur_step, max_step=2)
        stops.append(stop)
    assert stops == [False, False, True]


def _dataset(model, config_dict):
    config = Config(model=model, dataset=TINY_DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    return config, create_dataset(config)


def _raw_train_sequences(data_path, dataset):
    """Each user's training items (all but the last two), in time order, from the raw atomic file."""
    events = defaultdict(list)
    with open(os.path.join(data_path, TINY_DATASET, f"{TINY_DATASET}.inter"), encoding="utf-8") as f:
        next(f)
        for line in f:
            user, item, stamp = line.rstrip("\n").split("\t")
            events[user].append((float(stamp), item))
    sequences = {}
    for user, items in events.items():
        ids = [int(dataset.token2id(dataset.iid_field, item)) for _, item in sorted(items)]
        sequences[int(dataset.token2id(dataset.uid_field, user))] = ids[:-2]
    return sequences


def _samples(split):
    inter = split.inter_feat
    lengths = inter[split.item_list_length_field].tolist()
    histories = inter[split.iid_field + "_list"].tolist()
    out = defaultdict(list)
    for user, hist, length, target in zip(inter[split.uid_field].tolist(), histories, lengths,
                                          inter[split.iid_field].tolist()):
        out[user].append((tuple(hist[:length]), target))
    return out


def test_cold_start_split_is_seeded_and_removes_exactly_the_cold_items(tiny_data_path, tiny_bert_path, tmp_path):
    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path)
    config, dataset = _dataset("SASRec", config_dict)
    cold = select_cold_items(dataset, 0.05, seed=7)
    assert len(cold) == round(0.05 * len(eligible_items(dataset)))
    assert np.array_equal(cold, select_cold_items(dataset, 0.05, seed=7))
    assert not np.array_equal(cold, select_cold_items(dataset, 0.05, seed=8))
    cold_set = set(cold.tolist())

    _, plain_dataset = _dataset("SASRec", config_dict)
    plain = plain_dataset.build()
    stats = {}
    with cold_start_build(cold, stats):
        train, valid, test = data_preparation(config, dataset)
    # valid and test are untouched: cold items stay in their histories and targets
    for before, after in zip(plain[1:], (valid.dataset, test.dataset)):
        assert all(torch.equal(before.inter_feat[k], after.inter_feat[k]) for k in before.inter_feat.columns)
    assert any(t in cold_set for t in test.dataset.inter_feat["item_id"].tolist())

    # train == RecBole's augmentation of each user's cold-free training sequence (from the raw file)
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    expected = {}
    for user, items in _raw_train_sequences(tiny_data_path, dataset).items():
        seq = [i for i in items if i not in cold_set]
        samples = [(tuple(seq[max(0, j - max_len):j]), seq[j]) for j in range(1, len(seq))]
        if samples:
            expected[user] = samples
    assert dict(_samples(train.dataset)) == expected
    plain_targets = plain[0].inter_feat["item_id"].tolist()
    assert stats["removed_cold_target_samples"] == sum(t in cold_set for t in plain_targets) > 0
    ts = train.dataset.inter_feat
    assert torch.equal(ts["timestamp_list"][:, 0] > 0, ts["item_length"] > 0)  # parallel list fields follow

    loader, cases = cold_test_loader(config, test, cold)
    test_targets = test.dataset.inter_feat["item_id"].numpy()
    assert cases == int(np.isin(test_targets, cold).sum()) > 0
    assert set(loader.dataset.inter_feat["item_id"].tolist()) <= cold_set

    # LAMIA trains at every position of the kept sequence ends: no cold item may appear anywhere in training
    lamia_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, item_embedding="sentence")
    _, lamia_dataset = _dataset("LAMIA", lamia_dict)
    lamia_cold = select_cold_items(lamia_dataset, 0.05, seed=7)
    assert cold_set_hash(lamia_dataset, lamia_cold) == cold_set_hash(dataset, cold)
    with cold_start_build(lamia_cold):
        lamia_train = lamia_dataset.build()[0]
    seen = {item for samples in _samples(lamia_train).values() for hist, target in samples for item in hist + (target,)}
    assert not seen & set(lamia_cold.tolist()) and len(lamia_train) < len(train.dataset)


def _upsert_rows(out_dir, worker, count, barrier):
    from recbole_lamia.leaderboard.report import upsert_row

    barrier.wait()  # start together, so the read-modify-writes overlap
    for j in range(count):
        upsert_row(out_dir, "race", {"row": f"w{worker}-{j}", "model": "SASRec", "status": "budget",
                                     "test_ndcg@10": 0.01 * j})


def test_concurrent_leaderboards_on_one_dataset_keep_every_row(tmp_path):
    import multiprocessing

    out_dir = str(tmp_path / "results")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)
    workers = [context.Process(target=_upsert_rows, args=(out_dir, w, 4, barrier)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with open(os.path.join(out_dir, "race.csv"), newline="", encoding="utf-8") as f:
        names = sorted(row["row"] for row in csv.DictReader(f))
    assert names == sorted(f"w{w}-{j}" for w in range(3) for j in range(4))
    with open(os.path.join(out_dir, "race.md"), encoding="utf-8") as f:
        assert f.read().count("| w") == 12


def test_fingerprint_covers_plugin_settings_not_yaml_bytes_and_keeps_the_older_form(tmp_path, monkeypatch):
    import shutil

    import pytest

    import recbole_lamia.utils.registration as registration
    from recbole_lamia.leaderboard.runner import accepted_fingerprints, config_fingerprint
    from recbole_lamia.model.sequential_recommender.lamia import LAMIA

    properties = tmp_path / "properties"
    shutil.copytree(registration.PROPERTIES_DIR, properties)
    monkeypatch.setattr(registration, "PROPERTIES_DIR", str(properties))
    args = ("LAMIA", "ml-100k", "main", {"epochs": 3, "palette_dim": 8}, None, {"ratio": 0.0, "seed": 1})
    sasrec = ("SASRec",) + args[1:]
    before, sasrec_before = config_fingerprint(*args), config_fingerprint(*sasrec)
    bytes_before = config_fingerprint(*args, scheme="file_bytes")
    assert accepted_fingerprints(*args) == [before, bytes_before]  # the current form first

    # A comment changes the bytes, not the settings: the row stays valid (the older form saw the bytes).
    model_yaml = properties / "LAMIA.yaml"
    original = model_yaml.read_text()
    model_yaml.write_text("# a comment\n" + original)
    assert config_fingerprint(*args) == before
    assert config_fingerprint(*args, scheme="file_bytes") != bytes_before
    # The YAML as it was before a neutral option existed, and with a brand-new one at its neutral value:
    # the same settings, so rows made then stay valid.
    neutral_option = "item_label_smoothing"
    assert registration.neutral_options("LAMIA")[neutral_option] == 0
    without = "".join(line for line in original.splitlines(keepends=True)
                      if not line.startswith(f"{neutral_option}:"))
    assert without != original
    model_yaml.write_text(without)
    assert config_fingerprint(*args) == before
    monkeypatch.setitem(LAMIA.NEUTRAL_OPTIONS, "brand_new_option", 0.0)
    model_yaml.write_text(original + "brand_new_option: 0\n")
    assert config_fingerprint(*args) == before
    model_yaml.write_text(original + "brand_new_option: 0.5\n")
    assert config_fingerprint(*args) != before
    model_yaml.write_text(original)
    # ... and setting a neutral option to its neutral value changes nothing either.
    neutral_args = args[:3] + ({**args[3], neutral_option: 0.0},) + args[4:]
    assert config_fingerprint(*neutral_args) == before

    # A tuned setting changed: the checkpoint is not continued, another model on the dataset is not affected.
    (properties / "ml-100k").mkdir(exist_ok=True)
    (properties / "ml-100k" / "LAMIA.yaml").write_text(f"codebook_size: 64\n{neutral_option}: 0.3\n")
    tuned = config_fingerprint(*args)
    assert tuned != before
    assert config_fingerprint(*sasrec) == sasrec_before
    # With the dataset's YAML away from the neutral value, overriding back to it is a different configuration.
    assert config_fingerprint(*neutral_args) not in (tuned, before)
    with pytest.raises(ValueError, match="scheme"):
        config_fingerprint(*args, scheme="no_plugin_files")


def test_fingerprint_leaves_out_level_options_the_quantizer_ignores():
    from recbole_lamia.leaderboard.runner import config_fingerprint

    def fingerprint(**settings):
        return config_fingerprint("LAMIA", "amazon-beauty", "main", {"epochs": 3, **settings}, None,
                                  {"ratio": 0.0, "seed": 1})

    # amazon-beauty's LAMIA quantizer (multiscale_kmeans) reads no level option; PQ reads pq_subspaces.
    assert fingerprint(pq_subspaces=16) == fingerprint()
    assert fingerprint(quantizer="pq", pq_subspaces=16) != fingerprint(quantizer="pq", pq_subspaces=8)
    assert fingerprint(quantizer="rqvae", rq_levels=4) != fingerprint(quantizer="rqvae")
    # ml-100k's LAMIA file sets quantizer: pq, pq_subspaces: 16; the palette with k-means there ignores the latter
    # (the same settings as before that file existed: ``results/README.md`` reruns the recorded palette rows so).
    palette = {"item_embedding": "palette", "quantizer": "kmeans"}
    assert config_fingerprint("LAMIA", "ml-100k", "main", palette, None, {}) == config_fingerprint(
        "LAMIA", "ml-100k", "main", {**palette, "pq_subspaces": None}, None, {})
    assert config_fingerprint("LAMIA", "ml-100k", "main", {**palette, "quantizer": "pq"}, None, {}) != \
        config_fingerprint("LAMIA", "ml-100k", "main", {**palette, "quantizer": "pq", "pq_subspaces": 8}, None, {})


def test_reloaded_rows_rank_targets_as_the_table_and_compare_pairwise(tiny_data_path, tiny_bert_path, tmp_path):
    import pytest

    from recbole_lamia.leaderboard.ranks import load_phase, target_ranks
    from recbole_lamia.leaderboard.significance import paired_comparison, per_user_metrics

    _run(tmp_path, tiny_data_path, _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=2),
         models=["LAMIA", "SASRec"], cold_start_ratio=0)
    table = _csv_rows(tmp_path)
    per_user = {}
    for name in ("LAMIA", "SASRec"):
        run_dir = str(tmp_path / "ckpt" / TINY_DATASET / name / "main")
        phase = load_phase(run_dir)
        config, dataset, test_data, model = phase.config, phase.dataset, phase.test_data, phase.model
        users, items, ranks = target_ranks(model, test_data, dataset.item_num, dataset.uid_field, config["device"])
        assert len(set(users.tolist())) == len(users) and (items > 0).all() and (ranks >= 1).all()
        metrics = per_user_metrics(ranks, [5, 10])
        # The reloaded best checkpoint reproduces RecBole's test metrics. Both sides are rounded to 4 decimals on
        # their own (RecBole's mean in float32), so a value on a rounding boundary may differ by one last digit.
        for metric, values in metrics.items():
            assert round(float(values.mean()), 4) == pytest.approx(float(table[name][f"test_{metric}"]), abs=1.5e-4)
        # ... and, on the validation split, the best valid NDCG@10 it was chosen by
        _, _, valid_ranks = target_ranks(model, phase.valid_data, dataset.item_num, dataset.uid_field, config["device"])
        valid_ndcg = float(per_user_metrics(valid_ranks, [10])["ndcg@10"].mean())
        assert round(valid_ndcg, 4) == pytest.approx(float(table[name]["best_valid_ndcg@10"]), abs=1.5e-4)
        order = np.argsort(dataset.id2token(dataset.uid_field, users))
        per_user[name] = {metric: values[order] for metric, values in metrics.items()}

    same = paired_comparison(per_user["LAMIA"]["ndcg@10"], per_user["LAMIA"]["ndcg@10"], "ndcg@10", resamples=200)
    assert same["a_minus_b"] == 0 and same["p_value"] == 1.0
    recall = paired_comparison(per_user["LAMIA"]["recall@10"], per_user["SASRec"]["recall@10"], "recall@10",
                               resamples=200)
    expected = per_user["LAMIA"]["recall@10"].mean() - per_user["SASRec"]["recall@10"].mean()
    assert recall["a_minus_b"] == pytest.approx(expected, abs=1e-5)
    assert recall["ci95"][0] <= recall["a_minus_b"] <= recall["ci95"][1] and 0 < recall["p_value"] <= 1
    with pytest.raises(SystemExit, match="trained without cold-start items"):
        load_phase(str(tmp_path / "ckpt" / TINY_DATASET / "SASRec" / "main"), require_cold=True)
    with pytest.raises(SystemExit, match="leaderboard phase folder"):
        load_phase(str(tmp_path))
    result_file = tmp_path / "ckpt" / TINY_DATASET / "SASRec" / "main" / "result.json"
    result_file.write_text(result_file.read_text().replace('"status": "max_epochs"', '"status": "error"'))
    with pytest.raises(SystemExit, match="no finished result"):
        load_phase(str(result_file.parent))


def test_target_ranks_mask_history_and_put_unretrieved_targets_last():
    from recbole.data.interaction import Interaction

    from recbole_lamia.leaderboard.ranks import target_ranks

    class FixedScores:
        def full_sort_predict(self, interaction):
            return torch.tensor([[0.0, 0.1, 0.5, 0.9, 0.2],
                                 [0.0, 0.1, 0.5, float("-inf"), 0.2]])

    batch = (Interaction({"user_id": torch.tensor([7, 8])}), None, torch.tensor([0, 1]), torch.tensor([2, 3]))
    users, items, ranks = target_ranks(FixedScores(), [batch], 5, "user_id", "cpu")
    assert users.tolist() == [7, 8] and items.tolist() == [2, 3]
    assert ranks.tolist() == [2, 4]  # item 3 outscores user 7's target; user 8's target was not retrieved
    history = (torch.tensor([0]), torch.tensor([3]))  # user 7 has item 3 in training: masked, as RecBole does
    _, _, ranks = target_ranks(FixedScores(), [(batch[0], history, batch[2], batch[3])], 5, "user_id", "cpu",
                               desc="ranking")  # with a progress bar: same ranks
    assert ranks.tolist() == [1, 4]


def test_paired_comparison_detects_a_real_difference_and_rejects_bad_input():
    import pytest

    from recbole_lamia.leaderboard.significance import paired_comparison, per_user_metrics

    rng = np.random.default_rng(3)
    ranks_b = rng.integers(1, 200, 3000)
    ranks_a = np.where(rng.random(3000) < 0.1, 1, ranks_b)  # A moves 10 % of the targets to the top
    a, b = per_user_metrics(ranks_a, [10]), per_user_metrics(ranks_b, [10])
    assert b["ndcg@10"][ranks_b == 1].tolist() == [1.0] * int((ranks_b == 1).sum())
    for metric in ("recall@10", "ndcg@10"):
        result = paired_comparison(a[metric], b[metric], metric, resamples=500)
        assert result["a_minus_b"] > 0 and result["ci95"][0] > 0 and result["p_value"] < 0.01
    assert paired_comparison(a["recall@10"], b["recall@10"], "recall@10")["only_b_hits"] == 0
    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison(a["recall@10"], b["recall@10"][:-1], "recall@10")
    with pytest.raises(ValueError, match="resamples"):
        paired_comparison(a["recall@10"], b["recall@10"], "recall@10", resamples=0)
    with pytest.raises(ValueError, match="0 or 1"):
        paired_comparison(a["ndcg@10"], b["ndcg@10"], "recall@10")
    assert paired_comparison(a["ndcg@10"], b["ndcg@10"], "ndcg@10", resamples=99)["p_min"] == 0.01


def test_unseen_prior_sweep_reproduces_the_row_at_its_trained_count(tiny_data_path, tiny_bert_path, tmp_path):
    """``benchmarks/unseen_prior_sweep.py`` reloads a cold-start row trained with ``popularity_prior_weight``: at the
    ``unseen_item_count`` it was trained with it gives the table's test and cold metrics, and a larger count can only
    lift the cold targets."""
    import importlib.util

    import pytest

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                        "unseen_prior_sweep.py")
    spec = importlib.util.spec_from_file_location("benchmark_unseen_prior_sweep", path)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    overrides = _overrides(tiny_data_path, tiny_bert_path, tmp_path, epochs=1, popularity_prior_weight=1.0,
                           unseen_item_count=2.0)
    _run(tmp_path, tiny_data_path, overrides, models=["LAMIA"], cold_start_ratio=0.2, cold_start_mode="shared")
    row = _csv_rows(tmp_path)["LAMIA"]
    run_dir = str(tmp_path / "ckpt" / TINY_DATASET / "LAMIA" / "main")
    result = sweep.main([f"--run_dir={run_dir}", "--counts=2,1000", f"--output_dir={tmp_path}"])
    at_trained, at_large = result["rows"]
    assert at_trained["test"]["recall@10"] == pytest.approx(float(row["test_recall@10"]), abs=1.5e-4)
    assert at_trained["test"]["ndcg@10"] == pytest.approx(float(row["test_ndcg@10"]), abs=1.5e-4)
    assert at_trained["test_cold"]["recall@10"] == pytest.approx(float(row["cold_recall@10"]), abs=1.5e-4)
    assert at_trained["test_cold"]["cases"] == int(row["cold_test_cases"]) > 0
    # a huge prior for unseen items lifts the cold targets (it cannot lower them)
    assert at_large["test_cold"]["recall@10"] >= at_trained["test_cold"]["recall@10"]
    best = max(result["rows"], key=lambda r: r["valid"]["ndcg@10"])
    assert result["chosen_on_valid_ndcg@10"] == best["unseen_item_count"]
    assert os.path.exists(tmp_path / "unseen_prior_sweep_ckpt.json")


def test_sigterm_stops_the_leaderboard_as_ctrl_c_does():
    import signal
    import time

    import pytest

    from recbole_lamia.leaderboard.runner import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        with pytest.raises(KeyboardInterrupt):  # the path that terminates the row's child process
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before


def _bert4rec_trainer(config, run_dir, **setup):
    """A leaderboard trainer of BERT4Rec on the tiny data, built from the seed as the child process builds it."""
    from recbole.utils import get_model, get_trainer

    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    trainer = lb_trainer.leaderboard_trainer(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)
    trainer.setup_leaderboard(str(run_dir), progress=None, **setup)
    return trainer, train, valid


def test_a_run_stopped_inside_an_epoch_continues_as_if_never_stopped(tiny_data_path, tiny_bert_path, tmp_path):
    """A mid-epoch resume point (``EpochBatches``) replays the epoch's shuffle, drops the batches already trained
    on and restores that boundary's random states: BERT4Rec (random masks drawn per batch, dropout) ends with the
    same weights and validation score as the run that never stopped."""
    import pytest

    config = Config(model="BERT4Rec", dataset=TINY_DATASET,
                    config_dict=tiny_config(tiny_data_path, tiny_bert_path, tmp_path, epochs=2, train_batch_size=32))
    trainer, train, valid = _bert4rec_trainer(config, tmp_path / "straight", save_every_seconds=None)
    assert len(train) >= 5
    trainer.fit(train, valid, saved=True)
    straight = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    straight_score = trainer.best_valid_score

    run_dir = tmp_path / "stopped"  # a resume point at every batch boundary, stopped after 3 batches of epoch 2
    trainer, train, valid = _bert4rec_trainer(config, run_dir, save_every_seconds=0, interrupt_after_batches=(1, 3))
    with pytest.raises(lb_trainer.SimulatedInterruption):
        trainer.fit(train, valid, saved=True)
    trainer, train, valid = _bert4rec_trainer(config, run_dir, save_every_seconds=None)
    assert trainer.resume() == 1
    assert trainer.partial_epoch["batches"] == 3 and trainer.partial_epoch["epoch"] == 1
    partial_seconds = trainer.partial_epoch["seconds"]
    trainer.fit(train, valid, saved=True)
    resumed = trainer.model.state_dict()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    assert trainer.best_valid_score == straight_score
    assert trainer.epochs_done == 2 and len(trainer.epoch_seconds) == 2
    assert trainer.epoch_seconds[1] >= partial_seconds  # the epoch's time before the stop is counted
    # The epoch-end point that follows replaces the mid-epoch one.
    trainer, _, _ = _bert4rec_trainer(config, run_dir)
    assert trainer.resume() == 2 and trainer.partial_epoch is None
