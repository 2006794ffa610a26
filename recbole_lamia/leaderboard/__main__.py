"""``python -m recbole_lamia.leaderboard``: see ``recbole_lamia/leaderboard/runner.py``."""

import sys

from recbole_lamia.leaderboard.runner import main

if __name__ == "__main__":
    sys.exit(main())
