"""Result files are written whole or not at all (``recbole_lamia.utils.files``)."""

import json
import os

import pytest

from recbole_lamia.utils.files import write_json_atomic


def test_write_json_atomic_creates_folders_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "new" / "folder" / "result.json"
    write_json_atomic(str(path), {"recall@10": 0.5, "path": tmp_path})  # a Path value is written with str
    assert json.loads(path.read_text()) == {"recall@10": 0.5, "path": str(tmp_path)}

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"rows": [1, Unserialisable()]}, default=None)  # fails halfway through
    assert json.loads(path.read_text()) == {"recall@10": 0.5, "path": str(tmp_path)}
    assert os.listdir(path.parent) == ["result.json"]  # no temporary file left behind


def test_write_json_atomic_passes_json_options(tmp_path):
    path = tmp_path / "texts.json"
    write_json_atomic(str(path), {"title": "crème"}, indent=2, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == '{\n  "title": "crème"\n}'
