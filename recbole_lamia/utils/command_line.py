"""Helpers for command lines that sit beside RecBole's, whose ``Config`` reads ``sys.argv`` by itself."""

import contextlib
import sys


@contextlib.contextmanager
def recbole_argv_cleared():
    """Hide the command line from RecBole's ``Config`` while it is built (it reads every ``--key=value`` in
    ``sys.argv`` as a config key), for commands whose arguments are not config keys."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved
