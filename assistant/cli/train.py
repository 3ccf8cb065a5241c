"""`assistant train ...`: the training jobs on this computer, from the shell.

    assistant train list
    assistant train discard JOB_ID

A job is named by its folder's name under ``<data>/training/runs`` (what ``list`` shows). Runs on
the CLI's main thread; errors the user can cause (an unknown job, a running or finished one) are
TrainingJobError: one line, exit 2, through the command line's one handler.
"""

from __future__ import annotations

from pathlib import Path

from assistant.train.jobs import TrainingJobs


def add_train_commands(subparsers) -> None:
    train = subparsers.add_parser("train", help="training jobs: list them, discard a stopped one")
    commands = train.add_subparsers(dest="train_command", metavar="COMMAND", required=True)
    p = commands.add_parser("list", help="list the training jobs, newest first, with their state")
    p.set_defaults(handler=cmd_list)
    p = commands.add_parser("discard", help="give up a stopped job: shred its copies of your text and delete its "
                                            "checkpoints (cannot be undone; finished jobs' results are not touched)")
    p.add_argument("job_id", metavar="JOB_ID", help="the job's name, as `assistant train list` shows it")
    p.set_defaults(handler=cmd_discard)


def _state(run: dict) -> str:
    # The Train page's words for the same states (ui/train_operations.py).
    if run.get("result"):
        return "finished"
    return "stopped, can resume" if run.get("resumable") else "not finished"


def cmd_list(args, services) -> int:
    runs = TrainingJobs(services.paths, services.store).runs()
    if not runs:
        print("No training jobs.")
        return 0
    for run in runs:
        job = run.get("job") or {}
        print(f"{Path(run['folder']).name}  {job.get('kind', '?')}  {_state(run)}")
    return 0


def cmd_discard(args, services) -> int:
    jobs = TrainingJobs(services.paths, services.store)
    folder = jobs.job_folder(args.job_id)
    jobs.abandon(folder)
    print(f"Discarded {folder.name}: its copies of your text were shredded and its checkpoints deleted.")
    return 0
