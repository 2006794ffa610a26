"""Train and evaluate LAMIA, TIGER or any RecBole model with the plugin's dataset settings; use a trained model.

Usage (training takes the same arguments as RecBole's run_recbole.py):
    python run_recbole_lamia.py                                    # LAMIA on ml-100k
    python run_recbole_lamia.py --model=LAMIA --dataset=amazon-beauty   # shipped in datasets/, no download
    python run_recbole_lamia.py --model=SASRec --dataset=ml-100k --epochs=5
    python run_recbole_lamia.py --leaderboard --dataset=amazon-beauty
    python run_recbole_lamia.py --model=LAMIA --dataset=amazon-beauty --resume   # after an interruption
Any ``--key=value`` overrides a config key. ``--resume`` continues an interrupted run of the same settings from
its last epoch (``saved/<model>-<dataset>-<settings hash>-resume.pth``). ``--leaderboard`` runs a list of models
with one shared configuration instead (options: ``python -m recbole_lamia.leaderboard --help``).

Use a trained model (CHECKPOINT is the .pth file a run saved, e.g. saved/LAMIA-Dec-02-2026_10-00-00.pth):
    python run_recbole_lamia.py recommend CHECKPOINT --users A1YJEY40YUW4SE A2V5R832QCSOMX --k 10
    python run_recbole_lamia.py export CHECKPOINT --output semantic_ids.csv
    python run_recbole_lamia.py aspects CHECKPOINT --output_dir aspect_report

A bad input ends with one line starting ``error:`` and exit status 2; ``--debug`` shows the traceback.
"""

import argparse
import sys

COMMANDS = ("recommend", "export", "aspects")


def _fail(err, debug):
    if debug:
        raise err
    print(f"error: {err}", file=sys.stderr)
    return 2


def train(argv):
    """The training command: RecBole's ``run_recbole`` with the plugin registered."""
    from recbole_lamia.quick_start import check_model_name, format_summary, run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default="LAMIA")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run of these settings from its last epoch")
    # Several processes, as RecBole's run_recbole.py (torch.distributed; gloo on a machine without CUDA).
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default="5678", help="port of the rank-0 machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    args, _ = parser.parse_known_args(argv)
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    from recbole_lamia.quick_start import check_run
    from recbole_lamia.utils.errors import UserInputError

    try:
        check_model_name(args.model)
        check_run(args.model, args.dataset, config_files)
        if args.nproc > 1 or args.world_size > 0:
            from recbole_lamia.utils.distributed import spawn_run

            result = spawn_run(args.model, args.dataset, config_files, nproc=args.nproc, world_size=args.world_size,
                               ip=args.ip, port=args.port, group_offset=args.group_offset, resume=args.resume)
        else:
            result = run(args.model, args.dataset, config_file_list=config_files, resume=args.resume)
    except UserInputError as err:
        return _fail(err, args.debug)
    print(format_summary(args.model, args.dataset, result))
    return 0


def use_trained_model(argv):
    """The ``recommend``, ``export`` and ``aspects`` commands."""
    parser = argparse.ArgumentParser(prog="run_recbole_lamia.py", description="Use a trained model.")
    commands = parser.add_subparsers(dest="command", required=True)
    recommend = commands.add_parser("recommend", help="top-k items for users, after their whole known history")
    recommend.add_argument("--users", nargs="+", required=True, help="raw user ids, as in the .inter file")
    recommend.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    recommend.add_argument("--include_seen", action="store_true", help="also recommend items the user has had")
    recommend.add_argument("--output", help="also write the recommendations to this CSV file")
    export = commands.add_parser("export", help="the semantic-ID table: item id, tokens per aspect, item text")
    export.add_argument("--output", default="semantic_ids.csv", help=".csv (default) or .parquet (needs pyarrow)")
    aspects = commands.add_parser("aspects", help="aspect report: what each palette aspect groups (Markdown, PNG)")
    aspects.add_argument("--output_dir", default="aspect_report")
    aspects.add_argument("--top_codes", type=int, default=5, help="codes shown per aspect (default 5)")
    for sub in (recommend, export, aspects):
        sub.add_argument("checkpoint", help="a .pth file saved by a training run of this plugin")
        sub.add_argument("--model", help="refuse the checkpoint unless it holds this model")
        sub.add_argument("--dataset", help="refuse the checkpoint unless it was trained on this dataset")
        sub.add_argument("--verbose", action="store_true", help="show RecBole's log while loading")
        sub.add_argument("--debug", action="store_true", help="show the traceback of an error")
    if argv[0] == "recommend" and "--users" in argv and argv[-1].endswith(".pth") \
            and not any(arg.startswith("-") for arg in argv[argv.index("--users") + 1:]):
        # "--users a b CHECKPOINT": --users takes every word after it, so the checkpoint written last goes first.
        argv = [argv[0], argv[-1], *argv[1:-1]]
    args = parser.parse_args(argv)

    from recbole_lamia import case_study
    from recbole_lamia.utils.errors import UserInputError

    try:
        if args.command == "recommend":
            case_study.check_k(args.k, sys.maxsize)  # before the model is loaded
        if args.command == "aspects" and args.top_codes < 1:
            raise UserInputError(f"--top_codes must be a positive integer, got {args.top_codes}.")
        overrides = None if args.verbose else {"state": "WARNING", "show_progress": False}
        config, model, dataset, *_ = case_study.load_data_and_model(args.checkpoint, args.model, args.dataset,
                                                                    overrides)
        if args.command == "recommend":
            rows = case_study.recommend(model, dataset, args.users, k=args.k, exclude_seen=not args.include_seen)
            print(case_study.format_recommendations(rows))
            if args.output:
                case_study.write_rows(rows, args.output)
                print(f"wrote {len(rows)} rows to {args.output}")
        elif args.command == "export":
            count = case_study.export_semantic_ids(dataset, args.output)
            print(f"wrote the semantic IDs of {count} items to {args.output}")
        else:
            title = f"Aspect report: {config['model']} on {config['dataset']}"
            for path in case_study.aspect_report(dataset, args.output_dir, top_codes=args.top_codes, title=title):
                print(f"wrote {path}")
    except UserInputError as err:
        return _fail(err, args.debug)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--leaderboard" in argv:
        from recbole_lamia.leaderboard import main as leaderboard_main

        return leaderboard_main([arg for arg in argv if arg != "--leaderboard"])
    if argv and argv[0] in COMMANDS:
        return use_trained_model(argv)
    return train(argv)


if __name__ == "__main__":
    sys.exit(main())
