"""Shipped datasets: the files, their lookup and unpacking, the install layout, and the CLI's dataset errors."""

import configparser
import glob
import gzip
import os
import subprocess
import sys

import pytest
from recbole.config import Config

from recbole_lamia.data import local_datasets
from recbole_lamia.utils.config_check import unknown_plugin_like_keys
from recbole_lamia.utils.errors import UserInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_amazon_beauty_matches_its_recorded_checksums():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "datasets", "build_amazon_beauty.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with gzip.open(os.path.join(ROOT, "datasets", "amazon-beauty", "amazon-beauty.item.gz"), "rt") as f:
        assert f.readline().rstrip("\n").split("\t") == ["item_id:token", "title:token", "brand:token",
                                                         "categories:token_seq"]
        assert sum(1 for _ in f) == 12101


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A datasets/ folder holding one small gzip dataset, used as the plugin's shipped folder."""
    folder = tmp_path / "datasets" / "mini"
    folder.mkdir(parents=True)
    with gzip.open(folder / "mini.inter.gz", "wt") as f:
        rows = "".join(f"u{i % 3}\ti{i}\t{i}\n" for i in range(12))
        f.write("user_id:token\titem_id:token\ttimestamp:float\n" + rows)
    with gzip.open(folder / "mini.item.gz", "wt") as f:
        f.write("item_id:token\ttitle:token\n" + "".join(f"i{i}\tthing {i}\n" for i in range(12)))
    monkeypatch.setattr(local_datasets, "datasets_dir", lambda: str(tmp_path / "datasets"))
    monkeypatch.setenv("RECBOLE_LAMIA_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # RecBole's default data_path, dataset/, is relative
    return tmp_path


def test_shipped_dataset_is_unpacked_beside_its_archive_once(shipped):
    root = local_datasets.prepare_shipped_dataset("mini")
    assert root == str(shipped / "datasets")
    unpacked = shipped / "datasets" / "mini" / "mini.inter"
    assert unpacked.read_text().splitlines()[1] == "u0\ti0\t0"
    assert oct(unpacked.stat().st_mode & 0o044) == oct(0o044)  # readable by others, like the archive
    unpacked.write_text("edited")
    archive = (shipped / "datasets" / "mini" / "mini.inter.gz").stat()
    os.utime(unpacked, (archive.st_atime, archive.st_mtime))  # the write moved the mtime; under load, past a second
    local_datasets.prepare_shipped_dataset("mini")  # current by mtime: left alone
    assert unpacked.read_text() == "edited"
    os.utime(unpacked, (0, 0))  # older than its archive: unpacked again
    local_datasets.prepare_shipped_dataset("mini")
    assert unpacked.read_text().startswith("user_id:token")
    assert local_datasets.prepare_shipped_dataset("not-shipped") is None


def test_read_only_shipped_folder_unpacks_into_the_cache(shipped, monkeypatch):
    monkeypatch.setattr(local_datasets, "_writable", lambda folder: False)
    root = local_datasets.prepare_shipped_dataset("mini")
    assert root == str(shipped / "cache")
    assert (shipped / "cache" / "mini" / "mini.item").exists()
    assert not (shipped / "datasets" / "mini" / "mini.item").exists()


def test_config_points_data_path_at_the_shipped_copy_unless_the_user_set_one(shipped):
    cross_entropy = {"train_neg_sample_args": None}  # SASRec's CE loss; no dataset YAML sets it for "mini"
    config = Config(model="SASRec", dataset="mini", config_dict=cross_entropy)
    assert config["data_path"] == os.path.join(str(shipped / "datasets"), "mini")
    elsewhere = Config(model="SASRec", dataset="mini", config_dict=dict(cross_entropy, data_path="/elsewhere"))
    assert elsewhere["data_path"] == os.path.join("/elsewhere", "mini")
    # RecBole's default folder wins when it already holds the dataset.
    (shipped / "dataset" / "mini").mkdir(parents=True)
    (shipped / "dataset" / "mini" / "mini.inter").write_text("user_id:token\titem_id:token\n")
    assert Config(model="SASRec", dataset="mini", config_dict=cross_entropy)["data_path"] == \
        os.path.join("dataset/", "mini")


def test_unknown_dataset_names_the_folders_looked_in(shipped):
    with pytest.raises(UserInputError, match=r"dataset 'nowhere' not found: no nowhere\.inter in .*dataset/nowhere"):
        local_datasets.check_dataset_available("nowhere", "dataset/")
    local_datasets.check_dataset_available("mini", str(shipped / "datasets"))  # present: no error
    local_datasets.check_dataset_available("yelp", "dataset/")  # RecBole can download it: no error here


def test_cli_unknown_dataset_is_one_line_with_status_2():
    proc = subprocess.run([sys.executable, "run_recbole_lamia.py", "--model=LAMIA", "--dataset=does-not-exist"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: dataset 'does-not-exist' not found") and proc.stderr.count("\n") == 1
    assert proc.stdout == ""


def test_command_line_arguments_are_not_reported_as_unknown_keys(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_recbole_lamia.py", "--model=LAMIA", "--dataset=ml-100k",
                                      "--config_files=a.yaml", "--nproc=1", "--palete_size=3"])
    config = Config(model="LAMIA", dataset="ml-100k", config_dict={})
    assert unknown_plugin_like_keys(config) == [("palete_size", "palette_size")]


def test_a_regular_install_carries_every_properties_and_datasets_file():
    """setup.cfg's data_files copy properties/ and datasets/ to share/recbole-lamia/, where paths.py looks."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    installed = {}
    for target, sources in parser["options.data_files"].items():
        for pattern in (s.strip() for s in sources.replace("\n", ",").split(",") if s.strip()):
            for path in glob.glob(os.path.join(ROOT, pattern)):
                installed[os.path.relpath(path, ROOT)] = target
    tracked = subprocess.run(["git", "ls-files", "properties", "datasets"], capture_output=True, text=True,
                             cwd=ROOT).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    expected = {f for f in tracked if not f.endswith(".gitignore")}
    assert set(installed) == expected
    for path, target in installed.items():
        assert target == os.path.join("share", "recbole-lamia", os.path.dirname(path))
