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


try:  # the ml stages need the `ml` extra (torch, diffusers, transformers)
    from ml.cli import cli as ml_cli
except ImportError as _exc:  # pragma: no cover - depends on the install
    _ml_error = str(_exc)

    @main.command("ml", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def ml_missing(args: tuple[str, ...]) -> None:
        """ML stages (needs: pip install 't2i-feedback[ml]')."""
        raise click.ClickException(f"the ml stages need the 'ml' extra: {_ml_error}")
else:
    main.add_command(ml_cli, "ml")


if __name__ == "__main__":
    main()
