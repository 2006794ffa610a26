"""Result files written whole or not at all."""

import json

from recbole_lamia.data.cache import atomic_write


def write_json_atomic(path, data, indent=1, **dump_kwargs):
    """Write ``data`` as JSON to ``path`` with ``atomic_write`` (a temporary file beside it, then a rename).

    The JSON is built before anything is written, so a value that cannot be serialised leaves the previous file as
    it was. Missing parent folders are created. Values JSON cannot hold are written with ``str`` unless
    ``default`` is given.
    """
    dump_kwargs.setdefault("default", str)
    text = json.dumps(data, indent=indent, **dump_kwargs)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
