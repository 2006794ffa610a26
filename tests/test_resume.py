"""An interrupted run resumes from its last epoch and ends exactly as the uninterrupted run."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from recbole_lamia.quick_start import run
from recbole_lamia.trainer import ResumePoints
from recbole_lamia.utils.checkpoint import load_checkpoint
from recbole_lamia.utils.errors import UserInputError
from tests.conftest import TINY_DATASET, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Interrupted(KeyboardInterrupt):
    """Raised from the epoch callback, as Ctrl-C would arrive between two epochs."""


def test_resumed_run_equals_the_uninterrupted_one(tiny_data_path, tiny_bert_path, tmp_path, monkeypatch):
    def config(folder):
        return tiny_config(tiny_data_path, tiny_bert_path, tmp_path / folder, epochs=4, stopping_step=10,
                           semantic_id_cache_dir=str(tmp_path / "ids"))

    whole = run("LAMIA", TINY_DATASET, config_dict=config("whole"))

    original_save = ResumePoints.save

    def save_then_stop(self, epoch_idx, valid_score=None):
        original_save(self, epoch_idx, valid_score)
        if epoch_idx == 1:
            raise Interrupted()

    monkeypatch.setattr(ResumePoints, "save", save_then_stop)
    with pytest.raises(Interrupted):
        run("LAMIA", TINY_DATASET, config_dict=config("split"))
    monkeypatch.setattr(ResumePoints, "save", original_save)
    (point,) = (tmp_path / "split" / "saved").glob(f"LAMIA-{TINY_DATASET}-*-resume.pth")
    assert load_checkpoint(point)["epoch"] == 1
    resumed = run("LAMIA", TINY_DATASET, config_dict=config("split"), resume=True)
    assert resumed["test_result"] == whole["test_result"]
    assert resumed["best_valid_result"] == whole["best_valid_result"]
    assert load_checkpoint(point)["epoch"] == 3


def test_resume_refuses_missing_points_and_other_settings(tiny_data_path, tiny_bert_path, tmp_path):
    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path)
    with pytest.raises(UserInputError, match="nothing to resume"):
        run("LAMIA", TINY_DATASET, config_dict=config_dict, resume=True)
    run("LAMIA", TINY_DATASET, config_dict=config_dict)
    with pytest.raises(UserInputError, match="nothing to resume: .* resume points of other settings: .*-resume.pth"):
        run("LAMIA", TINY_DATASET, config_dict=dict(config_dict, learning_rate=0.01), resume=True)
    # More epochs is a continuation, not another configuration: 1 epoch + 1 resumed = 2 uninterrupted epochs.
    more = run("LAMIA", TINY_DATASET, config_dict=dict(config_dict, epochs=2), resume=True)
    two_epochs = tiny_config(tiny_data_path, tiny_bert_path, tmp_path / "two", epochs=2,
                             semantic_id_cache_dir=config_dict["semantic_id_cache_dir"])
    two = run("LAMIA", TINY_DATASET, config_dict=two_epochs)
    assert more["test_result"] == two["test_result"]


def test_a_resume_point_named_before_launch_keys_were_left_out_is_still_found(tiny_data_path, tiny_bert_path,
                                                                                tmp_path):
    from recbole.config import Config

    from recbole_lamia.trainer.resume import RESUMABLE_KEYS, resume_file

    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, port="29500")  # a launch key
    run("LAMIA", TINY_DATASET, config_dict=config_dict)
    config = Config(model="LAMIA", dataset=TINY_DATASET, config_dict=config_dict)
    current, legacy = resume_file(config), resume_file(config, RESUMABLE_KEYS)
    assert current != legacy and os.path.exists(current)
    os.replace(current, legacy)  # as an older version named it
    resumed = run("LAMIA", TINY_DATASET, config_dict=dict(config_dict, epochs=2), resume=True)
    assert load_checkpoint(current)["epoch"] == 1  # read from the old name, continued, saved under the new one
    assert 0 <= resumed["test_result"]["ndcg@10"] <= 1


def test_resuming_a_finished_run_reports_its_best_checkpoint(tiny_data_path, tiny_bert_path, tmp_path):
    """With nothing left to train, the resumed run evaluates the best checkpoint, not the last weights."""
    config_dict = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, epochs=4, stopping_step=10)
    finished = run("LAMIA", TINY_DATASET, config_dict=config_dict)
    (best,) = [p for p in (tmp_path / "saved").glob("LAMIA-*.pth") if not p.name.endswith("-resume.pth")]
    best_epoch = load_checkpoint(best)["epoch"]
    again = run("LAMIA", TINY_DATASET, config_dict=config_dict, resume=True)
    assert load_checkpoint(best)["epoch"] == best_epoch >= 0  # not overwritten by RecBole's fit (epoch -1)
    assert again["test_result"] == finished["test_result"]
    assert again["best_valid_result"] == finished["best_valid_result"]


def _cli(config_file, *extra):
    return [sys.executable, "run_recbole_lamia.py", "--model=LAMIA", f"--dataset={TINY_DATASET}",
            f"--config_files={config_file}", *extra]


def _test_metrics(stdout):
    return re.search(r"test: (.*)", stdout).group(1)


def test_cli_run_killed_with_sigkill_resumes_with_one_flag(tiny_data_path, tiny_bert_path, tmp_path):
    settings = tiny_config(tiny_data_path, tiny_bert_path, tmp_path / "whole", epochs=5, stopping_step=10,
                           semantic_id_cache_dir=str(tmp_path / "ids"))
    whole_file, split_file = tmp_path / "whole.yaml", tmp_path / "split.yaml"
    whole_file.write_text(yaml.safe_dump(settings))
    split_file.write_text(yaml.safe_dump(dict(settings, checkpoint_dir=str(tmp_path / "split" / "saved"))))
    whole = subprocess.run(_cli(whole_file), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert whole.returncode == 0, whole.stderr[-2000:]

    saved = tmp_path / "split" / "saved"

    def resume_points():  # not the hidden ".tmp-..." file a save writes before its rename (pathlib's glob sees it)
        return [p for p in saved.glob("*-resume.pth") if not p.name.startswith(".")]

    process = subprocess.Popen(_cli(split_file), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    while not resume_points() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    points = resume_points()
    assert points, "the run ended before it saved a resume point"
    point = points[0]
    assert load_checkpoint(point)["epoch"] < 4  # killed before the end
    resumed = subprocess.run(_cli(split_file, "--resume"), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _test_metrics(resumed.stdout) == _test_metrics(whole.stdout)
