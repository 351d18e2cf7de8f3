"""Model artifacts in the storage root: written by jobs, read back (and cached) by any worker."""

from __future__ import annotations

import shutil
from pathlib import Path

from workers.runtime import Runtime


def work_dir(rt: Runtime, key: str, create: bool = True) -> Path:
    """Where a job writes an artifact: inside local storage directly, else a local staging folder."""
    local = rt.storage.local_path(key)
    path = Path(local) if local else rt.cache_dir / "staging" / key
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def publish(rt: Runtime, local_dir: Path, key: str) -> str:
    """Make a finished artifact folder available to every worker; returns its URL."""
    local = rt.storage.local_path(key)
    if local:
        target = Path(local)
        if target.resolve() != local_dir.resolve():
            shutil.copytree(local_dir, target, dirs_exist_ok=True)
        return str(target.resolve())
    remote = f"{rt.storage.root}/{key}"
    rt.storage.fs.put(str(local_dir), remote, recursive=True)
    return f"{rt.storage.url.rstrip('/')}/{key}"


def fetch(rt: Runtime, url: str) -> str:
    """A local folder for an artifact URL; hub ids and local paths pass through unchanged."""
    if "://" not in url or url.startswith("file://"):
        return url.removeprefix("file://")
    prefix = rt.storage.url.rstrip("/") + "/"
    if not url.startswith(prefix):
        raise ValueError(f"artifact {url} is outside the configured storage {rt.storage.url}")
    key = url[len(prefix):]
    target = rt.cache_dir / "artifacts" / key
    if not (target / ".complete").exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        rt.storage.fs.get(f"{rt.storage.root}/{key}", str(tmp), recursive=True)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        (target / ".complete").touch()
    return str(target)
