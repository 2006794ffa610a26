"""Result files written whole or not at all."""

import json
import os


def write_json_atomic(path, data, indent=1, **dump_kwargs):
    """Write ``data`` as JSON to ``path`` through a temporary file beside it and ``os.replace``.

    A reader never sees half a file, and a failure while serialising leaves the previous file as it was (the
    temporary file is removed). Missing parent folders are created. Values JSON cannot hold are written with
    ``str`` unless ``default`` is given.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    dump_kwargs.setdefault("default", str)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, **dump_kwargs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
