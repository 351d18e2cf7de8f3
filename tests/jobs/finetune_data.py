"""A fine-tune's inputs without a generate and a train_reward job before it: a prompt set's generated
images in storage, a reward version and its scores, written straight to the database."""

from __future__ import annotations

import hashlib
import io

from PIL import Image as PILImage
from sqlalchemy import select

from app.config import Settings
from app.db.models import Image, ModelVersion, Prompt, RewardScore
from app.jobs import service as jobs
from app.storage import image_key, storage_for


def png(i: int, size: int = 32) -> bytes:
    """A distinct picture per i: a coloured square on a coloured ground."""
    im = PILImage.new("RGB", (size, size), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    x = (i * 5) % (size // 2)
    im.paste(((i * 29 + 100) % 256, 40, 200), (x, x, x + size // 3, x + size // 3))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def seed_training_set(db, settings: Settings, prompt_set_id: int, per_prompt: int = 4) -> int:
    """Generated images of every prompt of the set, each scored by a new reward version; committed.
    Returns the reward version's id."""
    storage = storage_for(settings.storage_url)
    base = jobs.ensure_base_generator(db, settings)
    reward = ModelVersion(kind="reward", mode="mlp", name="reward", artifact_url="unused", hyperparams={},
                          label_snapshot={}, metrics={}, code_version="", prompt_set_id=prompt_set_id)
    db.add(reward)
    db.flush()
    prompts = db.scalars(select(Prompt).where(Prompt.prompt_set_id == prompt_set_id).order_by(Prompt.id)).all()
    i = 0
    for prompt in prompts:
        for seed in range(per_prompt):
            data = png(i)
            digest = hashlib.sha256(data).hexdigest()
            key = image_key(digest, "png")
            storage.put(key, data)
            image = Image(prompt_id=prompt.id, prompt_set_id=prompt_set_id, source="generated",
                          generator_version_id=base.id, seed=seed, storage_key=key, content_hash=digest,
                          mime_type="image/png", width=32, height=32, byte_size=len(data), ratings_wanted=0,
                          ratings_open=0)
            db.add(image)
            db.flush()
            db.add(RewardScore(image_id=image.id, reward_version_id=reward.id, score=(i % 5) / 4))
            i += 1
    db.commit()
    return reward.id
