"""Per-process worker state: settings, database, storage, and models loaded once and reused."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.db.models import ModelVersion
from app.db.session import make_engine, make_sessionmaker, transaction
from app.jobs.dispatch import CeleryDispatcher, Dispatcher, install_after_commit
from app.storage import Storage, storage_for


class Runtime:
    def __init__(self, settings: Settings, dispatcher: Dispatcher | None = None,
                 session_factory: sessionmaker[Session] | None = None) -> None:
        self.settings = settings
        self.sessions = session_factory or make_sessionmaker(make_engine(settings.database_url, pool_size=5))
        self.dispatcher = dispatcher or CeleryDispatcher(settings.broker_url)
        if session_factory is None:
            install_after_commit(self.sessions, self.dispatcher)
        self.storage: Storage = storage_for(settings.storage_url)
        self.cache_dir = Path(settings.model_cache_dir).resolve()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._models: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.worker_name = f"{os.uname().nodename}:{os.getpid()}"
        # set when the process stops (the demo's Ctrl-C): a running job stops at its next check and
        # goes back to the queue, to resume on the next start
        self.stopping = threading.Event()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    # ---- models, loaded once per process -------------------------------------------------------

    def model(self, key: tuple[str, ...], load: Callable[[], Any], keep: int = 3) -> Any:
        """Load by key once and reuse; keeps the `keep` most recently used (GPU memory is finite)."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        loaded = load()
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > keep:
                self._models.popitem(last=False)
        return loaded

    def generator_source(self, version: ModelVersion) -> tuple[str, str | None]:
        """(model folder or hub id, LoRA adapter folder or None) for a generator version."""
        from workers.artifacts import fetch

        if version.mode == "lora":
            return fetch(self, version.hyperparams["base_model"]), fetch(self, version.artifact_url)
        return fetch(self, version.artifact_url), None

    def generator(self, version: ModelVersion) -> Any:
        from ml.generation import load_generator

        model, lora = self.generator_source(version)
        return self.model(("generator", model, lora or ""), lambda: load_generator(model, lora=lora, fuse_lora=True))

    def clip(self) -> Any:
        from ml.embeddings import load_clip
        from workers.artifacts import fetch

        source = fetch(self, self.settings.clip_model)
        return self.model(("clip", source), lambda: load_clip(source, model_id=self.settings.clip_model))

    def reward(self, version: ModelVersion) -> Any:
        from ml.reward import load_reward
        from workers.artifacts import fetch

        path = fetch(self, version.artifact_url)
        return self.model(("reward", path), lambda: load_reward(path))

    def embedding_cache(self) -> Any:
        from ml.embeddings import EmbeddingCache

        return self.model(("embedding-cache",), lambda: EmbeddingCache(self.cache_dir / "embeddings.sqlite3"),
                          keep=8)

    def latent_cache(self) -> Any:
        """The VAE latents of training images, by VAE and content, beside the embedding cache."""
        from ml.latent_cache import LatentCache

        return self.model(("latent-cache",), lambda: LatentCache(self.cache_dir / "latents.sqlite3"), keep=8)


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    return Runtime(get_settings())
