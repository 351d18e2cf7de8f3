"""The `t2i-feedback` command: app commands plus the worker, the embedded demo and ml stages."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli import COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="t2i-feedback")
def main() -> None:
    """t2i-feedback: the human-feedback loop for text-to-image models."""


for command in COMMANDS:
    main.add_command(command)


@main.command()
@click.option("--queues", default="gpu,cpu", show_default=True, help="comma-separated Celery queues")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="processes; keep 1 per GPU so one GPU task runs at a time per card")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--beat/--no-beat", default=True, show_default=True,
              help="also run the periodic retrain check and lost-job reaper (one worker is enough)")
@click.option("--gpus", default=None, type=click.IntRange(1, 64),
              help="train each finetune job on this many GPUs of this host, one process each under "
                   "`accelerate launch` (sets T2IF_FINETUNE_PROCESSES) [default: 1, in the worker's process]")
def worker(queues: str, concurrency: int, loglevel: str, beat: bool, gpus: int | None) -> None:
    """Run a Celery worker (configured by T2IF_* environment variables)."""
    import os

    if gpus is not None:  # before the settings are first read; the pool's children inherit it
        os.environ["T2IF_FINETUNE_PROCESSES"] = str(gpus)
    from app.config import get_settings
    from workers.celery_app import celery_app

    args = ["worker", "-Q", queues, "--concurrency", str(concurrency), "--loglevel", loglevel,
            "--without-gossip", "--without-mingle"]
    if beat:
        schedule = get_settings().beat_schedule_path  # per installation, not a path shared by every user of /tmp
        schedule.parent.mkdir(parents=True, exist_ok=True)
        args += ["--beat", "--schedule", str(schedule)]
    celery_app.worker_main(args)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", default="./demo-data", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="SQLite database, storage and caches")
@click.option("--models", default=None, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="a folder with sd/ and clip/ (e.g. from `ml make-world-models` or `ml make-tiny-models`) "
                   "[default: the shipped shapes-world models]")
@click.option("--simulated-raters", default=9, show_default=True, type=click.IntRange(0, 50),
              help="oracle annotators that rate and vote beside you through the REST API (world models only)")
@click.option("--rater-error", default=0.1, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="share of the simulated raters' answers that are wrong")
def demo(host: str, port: int, data_dir: Path, models: Path | None, simulated_raters: int,
         rater_error: float) -> None:
    """Run everything in one process: SQLite, local storage, an in-process worker and the shipped
    shapes-world models on the CPU; the loop runs a round by itself within minutes."""
    from workers.demo import DemoOptions, run_demo

    run_demo(host=host, port=port, data_dir=data_dir,
             options=DemoOptions(models=models, simulated_raters=simulated_raters, rater_error=rater_error))


@main.command("simulate-raters")
@click.option("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
@click.option("--login", "logins", multiple=True, metavar="USER:PASSWORD",
              help="an annotator account to rate as (repeatable: one thread each)")
@click.option("--token", "tokens", multiple=True, help="an annotator's API token instead of a log-in (repeatable)")
@click.option("--error-rate", default=0.1, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="share of answers each rater gets wrong on purpose")
@click.option("--panel", type=click.Choice(["uniform", "mixed"]), default="uniform", show_default=True,
              help="uniform: every rater has --error-rate; mixed: a crowd of mixed reliability in the order of the "
                   "accounts given (one adversarial who always answers wrongly, one lenient who calls half of all "
                   "images good, 30%% noisy with 25%% wrong answers, the rest accurate with 2%%); needs 3 or more "
                   "raters")
@click.option("--ratings/--no-ratings", default=True, show_default=True, help="answer rating tasks")
@click.option("--comparisons/--no-comparisons", default=True, show_default=True, help="vote on comparisons")
@click.option("--until-idle", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="stop after this many seconds with nothing to do")
@click.option("--pace", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="seconds each rater waits between answers")
@click.option("--seed", default=0, show_default=True, type=int)
def simulate_raters(url: str, logins: tuple[str, ...], tokens: tuple[str, ...], error_rate: float, panel: str,
                    ratings: bool, comparisons: bool, until_idle: float, pace: float, seed: int) -> None:
    """Shapes-world oracle raters that log in and rate / vote through the REST API like people."""
    import json

    from workers.simulate import SimulatedAnnotator, run_team

    if not logins and not tokens:
        raise click.UsageError("give at least one --login USER:PASSWORD or --token")
    accounts: list[tuple[str, str | None, str | None]] = []  # (name, password, token)
    for login in logins:
        user, sep, password = login.partition(":")
        if not sep or not user or not password:
            raise click.BadParameter(f"{login!r} is not USER:PASSWORD", param_hint="--login")
        accounts.append((user, password, None))
    accounts += [(f"token-{j + 1}", None, token) for j, token in enumerate(tokens)]
    kinds = [("uniform", error_rate, 0.0)] * len(accounts)
    if panel == "mixed":
        from ml.world.raters import mixed_panel

        try:
            crowd = mixed_panel(len(accounts), seed=seed)
        except ValueError as exc:
            raise click.BadParameter(f"{exc}; give at least 3 raters", param_hint="--panel") from None
        kinds = [(r.name.split("-")[0], r.error_rate, r.good_bias) for r in crowd]
    team = [SimulatedAnnotator(url, user, password, token=token, error_rate=err, good_bias=bias, seed=seed + i,
                               pace=pace, ratings=ratings, comparisons=comparisons)
            for i, ((user, password, token), (_, err, bias)) in enumerate(zip(accounts, kinds, strict=True))]
    threads, _ = run_team(team, idle_wait=1.0, until_idle=until_idle)
    for t in threads:
        t.join()
    stats = {a.username: {"kind": kind, "error_rate": a.error_rate, "good_bias": a.good_bias, **vars(a.stats)}
             for a, (kind, _, _) in zip(team, kinds, strict=True)}
    click.echo(json.dumps(stats))
    if any(a.stats.ratings + a.stats.votes == 0 and a.stats.errors for a in team):
        raise click.ClickException("a rater answered nothing and met errors (see the log above)")


class _LazyMlGroup(click.Group):
    """`t2i-feedback ml ...`: imports torch only when an ml stage runs, so that other commands
    start fast and the Celery parent process never initialises torch before it forks."""

    def _real(self) -> click.Group:
        try:
            from ml.cli import cli as ml_cli
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise click.ClickException(
                f"the ml stages need the 'ml' extra (pip install 't2i-feedback[ml]'): {exc}") from exc
        return ml_cli

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._real().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._real().get_command(ctx, name)


main.add_command(_LazyMlGroup("ml", help="ML stages on files alone: prompts, generate, embed, train-reward, "
                                         "score, finetune, best-of-n, make-tiny-models, make-world-models, "
                                         "world-loop."))


if __name__ == "__main__":
    main()
