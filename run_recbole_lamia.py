"""Train and evaluate LAMIA, TIGER or any RecBole model with the plugin's dataset settings.

Usage (as RecBole's run_recbole.py):
    python run_recbole_lamia.py                                   # LAMIA on ml-100k
    python run_recbole_lamia.py --model=LAMIA --dataset=amazon-beauty --data_path=../shared/datasets
    python run_recbole_lamia.py --model=SASRec --dataset=ml-100k --epochs=5
    python run_recbole_lamia.py --leaderboard --dataset=amazon-beauty --data_path=../shared/datasets
Any ``--key=value`` overrides a config key. ``--leaderboard`` runs a list of models with one shared
configuration instead (options: ``python -m recbole_lamia.leaderboard --help``).
"""

import argparse
import sys

from recbole_lamia.quick_start import check_model_name, format_summary, run


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--leaderboard" in argv:
        from recbole_lamia.leaderboard import main as leaderboard_main

        return leaderboard_main([arg for arg in argv if arg != "--leaderboard"])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="LAMIA")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    args, _ = parser.parse_known_args(argv)
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    try:
        check_model_name(args.model)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = run(args.model, args.dataset, config_file_list=config_files)
    print(format_summary(args.model, args.dataset, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
