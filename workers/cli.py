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
def worker(queues: str, concurrency: int, loglevel: str, beat: bool) -> None:
    """Run a Celery worker (configured by T2IF_* environment variables)."""
    from workers.celery_app import celery_app

    args = ["worker", "-Q", queues, "--concurrency", str(concurrency), "--loglevel", loglevel,
            "--without-gossip", "--without-mingle"]
    if beat:
        args += ["--beat", "--schedule", "/tmp/t2if-celerybeat-schedule"]
    celery_app.worker_main(args)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", default="./demo-data", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="SQLite database, storage and models")
def demo(host: str, port: int, data_dir: Path) -> None:
    """Run everything in one process: SQLite, local storage, in-process worker, tiny CPU models."""
    from workers.demo import run_demo

    run_demo(host=host, port=port, data_dir=data_dir)


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
                                         "score, finetune, best-of-n, make-tiny-models."))


if __name__ == "__main__":
    main()
