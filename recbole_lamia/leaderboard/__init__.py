"""Leaderboard: run a list of models on one dataset with one shared configuration.

``python -m recbole_lamia.leaderboard --dataset=amazon-beauty --data_path=../shared/datasets`` (see
``runner.py`` for the options). One concept per module:

* ``rows``: the row table (model + config override), ``ROWS``, which users extend;
* ``runner``: the command line, resumable orchestration, one subprocess per row and phase;
* ``child``: one phase of one row (data, training, evaluation, measurements);
* ``trainer``: RecBole trainer subclass with a resume point per epoch, a time budget and progress;
* ``cold_start``: the cold-start split and the cold test subset;
* ``report``: CSV, markdown table and plot.
"""

from recbole_lamia.leaderboard.rows import DEFAULT_ROWS, ROWS, RowSpec
from recbole_lamia.leaderboard.runner import main, row_finished, run_leaderboard

__all__ = ["DEFAULT_ROWS", "ROWS", "RowSpec", "main", "row_finished", "run_leaderboard"]
