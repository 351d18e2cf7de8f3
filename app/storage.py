"""Image and artifact storage addressed by URL: a local folder by default, any fsspec URL
(s3://bucket/prefix with s3fs installed) in production. Keys are relative, '/'-separated."""

from __future__ import annotations

import os
import re
import tempfile
from functools import lru_cache

import fsspec

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class StorageError(Exception):
    pass


class Storage:
    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.local = self.fs.protocol in ("file", ("file", "local")) or "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def _path(self, key: str) -> str:
        # keys come from our own code, but refuse anything that could climb out of the root
        if not _SAFE_KEY.match(key) or ".." in key.split("/"):
            raise StorageError(f"invalid storage key {key!r}")
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.local:
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            # write then rename: a crash never leaves a half-written file under the final name
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self.fs.pipe_file(path, data)

    def get(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._path(key))  # type: ignore[no-any-return]
        except FileNotFoundError as exc:
            raise StorageError(f"missing object {key!r}") from exc

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def local_path(self, key: str) -> str | None:
        return self._path(key) if self.local else None


@lru_cache(maxsize=8)
def storage_for(url: str) -> Storage:
    return Storage(url)


def image_key(content_hash: str, extension: str) -> str:
    """Content-addressed: the same bytes are stored once, whoever registers them."""
    return f"images/{content_hash[:2]}/{content_hash}.{extension}"
