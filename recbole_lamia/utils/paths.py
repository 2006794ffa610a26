"""Where the plugin's top-level folders (``properties/``, ``datasets/``) are, in a checkout and when installed.

In a source checkout (``pip install -e .``) they sit beside the ``recbole_lamia`` package. A regular install
(``pip install .``) copies them as data files to ``<prefix>/share/recbole-lamia/`` (``setup.cfg``,
``[options.data_files]``), where ``<prefix>`` is the environment's (or, for ``pip install --user``, the user
base). The first existing folder wins.
"""

import os
import site
import sys
import sysconfig

PACKAGE_PARENT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARE_NAME = os.path.join("share", "recbole-lamia")


def _install_prefixes():
    prefixes = [sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)]
    seen = []
    for prefix in prefixes:
        if prefix and prefix not in seen:
            seen.append(prefix)
    return seen


def resource_candidates(name):
    """Every folder where the plugin's top-level folder ``name`` may be, in lookup order."""
    return [os.path.join(PACKAGE_PARENT, name)] + [os.path.join(p, SHARE_NAME, name) for p in _install_prefixes()]


# A file that only the plugin's copy of each folder holds: ``site-packages/datasets`` is often another package
# (Hugging Face's datasets), which a regular install puts exactly where a checkout has its datasets/ folder.
MARKERS = {"properties": "LAMIA.yaml", "datasets": "build_amazon_beauty.py"}


def resource_dir(name):
    """The first candidate folder for ``name`` (``properties`` or ``datasets``) that holds the plugin's marker
    file; the checkout's folder when none does, so that messages name where it was expected."""
    for folder in resource_candidates(name):
        if os.path.isfile(os.path.join(folder, MARKERS[name])):
            return folder
    return resource_candidates(name)[0]
