"""Helpers for `ml.cli`: config dataclasses as click options, JSONL files, tqdm progress."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click


def _plain_type(tp: Any) -> Any:
    """int for `int | None`, etc.; None for types the command line does not carry."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 and args[0] in (int, float, str, bool) else None
    return tp if tp in (int, float, str, bool) else None


def config_options(cls: type, prefix: str = "", skip: Iterable[str] = ()) -> Callable:
    """Add one `--option` per simple field of the config dataclass `cls`, help text from the field.

    Options default to None so that the dataclass default stays the single source of defaults.
    """
    hints = typing.get_type_hints(cls)
    skip = set(skip)

    def decorate(f: Callable) -> Callable:
        for fld in reversed(dataclasses.fields(cls)):
            tp = _plain_type(hints[fld.name])
            if fld.name in skip or tp is None:
                continue
            name = prefix + fld.name.replace("_", "-")
            default = fld.default if fld.default is not dataclasses.MISSING else None
            help_text = f"{fld.metadata.get('help', '')} [default: {default}]"
            dest = (prefix + fld.name).replace("-", "_")
            if tp is bool:
                f = click.option(f"--{name}/--no-{name}", dest, default=None, help=help_text)(f)
            else:
                f = click.option(f"--{name}", dest, type=tp, default=None, help=help_text)(f)
        return f

    return decorate


def build_config(cls: type, kwargs: dict, prefix: str = "", **fixed: Any) -> Any:
    """The config from the options that were given (popped from kwargs) plus `fixed` values."""
    values = {}
    for fld in dataclasses.fields(cls):
        key = prefix.replace("-", "_") + fld.name
        if key in kwargs:
            v = kwargs.pop(key)
            if v is not None:
                values[fld.name] = v
    try:
        return cls(**{**values, **fixed})
    except ValueError as exc:  # a config's own check of its values: a usage error, not a traceback
        raise click.UsageError(str(exc)) from None


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[dict]:
    rows = []
    p = Path(path)
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise click.ClickException(f"{p}:{n}: not JSON ({e.msg})") from None
        missing = [k for k in required if k not in row]
        if missing:
            raise click.ClickException(f"{p}:{n}: missing field(s) {missing}")
        rows.append(row)
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    text = "".join(json.dumps(r, default=str) + "\n" for r in rows)
    if str(path) == "-":
        click.echo(text, nl=False)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)


def bar(desc: str) -> tuple[Any, Callable[..., None]]:
    """A tqdm bar and a `progress(done, total, *_)` callback that drives it."""
    from tqdm import tqdm

    pbar = tqdm(desc=desc, unit="it", leave=False)

    def update(done: int, total: int, *_: Any) -> None:
        pbar.total = total
        pbar.n = done
        pbar.refresh()

    return pbar, update


def resolve(base: Path, value: str) -> Path:
    """Paths inside a JSONL file are relative to the file's folder."""
    p = Path(value)
    return p if p.is_absolute() else base / p
