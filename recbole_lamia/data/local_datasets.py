"""Datasets shipped with the plugin (``datasets/<name>/<name>.inter.gz``), unpacked on first use.

RecBole reads ``<data_path>/<name>/<name>.inter``. For a dataset the plugin ships, ``data_path`` defaults to
the folder that holds the unpacked files (the patched ``Config``, ``utils/registration.py``); a ``data_path``
the user sets always wins. The ``.gz`` files are unpacked next to themselves when that folder is writable,
otherwise into ``$RECBOLE_LAMIA_DATA_CACHE`` (default ``~/.cache/recbole_lamia/datasets``).
"""

import gzip
import os
import shutil
from logging import getLogger

import recbole
import yaml

from recbole_lamia.data.cache import atomic_write
from recbole_lamia.utils.errors import UserInputError
from recbole_lamia.utils.paths import resource_candidates, resource_dir

ATOMIC_SUFFIXES = ("inter", "item", "user", "kg", "link", "net")


def datasets_dir():
    """The plugin's ``datasets/`` folder (the checkout's, or the installed copy's)."""
    return resource_dir("datasets")


def cache_dir():
    """Where shipped datasets are unpacked when their own folder is read-only."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "recbole_lamia", "datasets")
    return os.environ.get("RECBOLE_LAMIA_DATA_CACHE", default)


def shipped_files(name):
    """``{suffix: path of <name>.<suffix>.gz}`` of a shipped dataset; empty when the plugin does not ship it."""
    folder = os.path.join(datasets_dir(), name)
    files = {s: os.path.join(folder, f"{name}.{s}.gz") for s in ATOMIC_SUFFIXES}
    files = {s: f for s, f in files.items() if os.path.isfile(f)}
    return files if "inter" in files else {}


def has_atomic_files(data_path, name):
    """Whether ``<data_path>/<name>/<name>.inter`` exists (what RecBole reads)."""
    return os.path.isfile(os.path.join(data_path, name, f"{name}.inter"))


def _unpack(source, target):
    """Decompress ``source`` to ``target`` atomically; the copy takes the archive's mtime, which tells a later run
    whether it is current, and ordinary read permissions (the temporary file's are private)."""
    def decompress(out):
        with gzip.open(source, "rb") as src:
            shutil.copyfileobj(src, out, length=1 << 20)

    atomic_write(target, decompress)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(target, 0o666 & ~umask)
    stat = os.stat(source)
    os.utime(target, (stat.st_atime, stat.st_mtime))


def _is_current(source, target):
    return os.path.isfile(target) and int(os.stat(target).st_mtime) == int(os.stat(source).st_mtime)


def _writable(folder):
    return os.access(folder, os.W_OK)


def prepare_shipped_dataset(name):
    """The ``data_path`` under which the shipped dataset ``name`` is unpacked and current; ``None`` when the
    plugin does not ship ``name``. Unpacks (again) only what is missing or older than its archive."""
    files = shipped_files(name)
    if not files:
        return None
    source_root = os.path.dirname(os.path.dirname(files["inter"]))
    root = source_root if _writable(os.path.dirname(files["inter"])) else cache_dir()
    for suffix, source in files.items():
        target = os.path.join(root, name, f"{name}.{suffix}")
        if not _is_current(source, target):
            getLogger().info(f"Unpacking {source} to {target}.")
            _unpack(source, target)
    return root


def downloadable_datasets():
    """Names RecBole's downloader knows (``recbole/properties/dataset/url.yaml``)."""
    path = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(path, encoding="utf-8") as f:
        return set(yaml.safe_load(f) or {})


def check_dataset_available(name, data_path, benchmark_parts=None):
    """Raise ``UserInputError`` (one line) when ``<data_path>/<name>/`` has no ``.inter`` file (nor the
    ``<name>.<part>.inter`` files of ``benchmark_filename``), the plugin does not ship ``name`` and RecBole cannot
    download it. ``data_path`` is RecBole's, without the dataset name."""
    parts = [os.path.join(data_path, name, f"{name}.{part}.inter") for part in benchmark_parts or []]
    if (name == "ml-100k" or has_atomic_files(data_path, name) or (parts and all(map(os.path.isfile, parts)))
            or shipped_files(name) or name in downloadable_datasets()):
        return
    looked_in = [os.path.abspath(os.path.join(data_path, name))]
    looked_in += [os.path.join(folder, name) for folder in resource_candidates("datasets") if os.path.isdir(folder)]
    raise UserInputError(
        f"dataset '{name}' not found: no {name}.inter in {', '.join(looked_in)}, and it is not a dataset RecBole "
        f"can download. Put its atomic files in <data_path>/{name}/ and pass --data_path=<data_path>.")
