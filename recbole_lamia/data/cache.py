"""On-disk cache of item embeddings and semantic IDs: numpy ``.npz`` plus JSON metadata, no pickle.

Each entry is ``<name>.npz`` and ``<name>.json``. Both are written atomically (temporary file, then
rename), the JSON last, and the JSON records the key and the SHA-256 of the ``.npz`` bytes, so a
truncated, corrupted or mismatched entry is detected on load, reported, and rebuilt.
"""

import hashlib
import json
import os
import tempfile
from logging import getLogger

import numpy as np


def stable_hash(*parts):
    """SHA-256 hex digest of JSON-serialised ``parts`` (sorted keys), stable across runs."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path, write):
    """Call ``write(binary file)`` on a temporary file beside ``path``, then rename it to ``path``: a crash
    never leaves half a file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class ArrayCache:
    """A folder of named, keyed array entries."""

    def __init__(self, directory):
        self.directory = directory
        self.logger = getLogger()

    def paths(self, name):
        base = os.path.join(self.directory, name)
        return base + ".npz", base + ".json"

    def save(self, name, key, arrays, metadata=None):
        """Store ``arrays`` (dict of numpy arrays) under ``name`` with ``key`` and ``metadata``."""
        npz_path, json_path = self.paths(name)
        atomic_write(npz_path, lambda f: np.savez(f, **arrays))
        meta = {"key": key, "sha256": _file_sha256(npz_path),
                "arrays": {k: list(v.shape) for k, v in arrays.items()}, "metadata": metadata or {}}
        atomic_write(json_path, lambda f: f.write(json.dumps(meta, indent=1, default=str).encode("utf-8")))

    def load(self, name, key):
        """Return ``(arrays, metadata)`` if a valid entry for ``key`` exists, else None.

        A missing entry returns None quietly; a corrupted or mismatched one logs a warning first.
        """
        npz_path, json_path = self.paths(name)
        if not os.path.exists(json_path) and not os.path.exists(npz_path):
            return None
        try:
            with open(json_path, encoding="utf-8") as f:
                meta = json.load(f)
            if meta.get("key") != key:
                raise ValueError("its key does not match the current texts/config")
            if _file_sha256(npz_path) != meta.get("sha256"):
                raise ValueError("its data file checksum does not match")
            with np.load(npz_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            shapes = {k: list(v.shape) for k, v in arrays.items()}
            if shapes != meta.get("arrays"):
                raise ValueError(f"array shapes {shapes} differ from the recorded {meta.get('arrays')}")
        except (OSError, ValueError, json.JSONDecodeError, KeyError) as err:
            self.logger.warning(f"Semantic-ID cache entry {npz_path} is unusable ({err}); rebuilding it.")
            return None
        return arrays, meta.get("metadata", {})

    def load_metadata(self, name, key):
        """Return ``(array shapes, metadata)`` of the entry for ``key`` without reading its arrays, else None.

        Only the JSON is read (its key checked), so a caller that needs the metadata alone skips a large
        ``.npz``, which may even be absent.
        """
        _, json_path = self.paths(name)
        try:
            with open(json_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        if meta.get("key") != key:
            return None
        return meta.get("arrays", {}), meta.get("metadata", {})
