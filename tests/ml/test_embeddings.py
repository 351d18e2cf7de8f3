import multiprocessing

import numpy as np
from PIL import Image

from ml.embeddings import EmbeddingCache, clip_score, embed_images, embed_texts


def _images(n):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def test_embeddings_are_unit_norm_and_cached(clip, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    images = _images(5)
    first = embed_images(clip, images + images[:1], cache)
    assert first.computed == 5 and first.vectors.shape == (6, clip.dim)
    assert np.allclose(np.linalg.norm(first.vectors, axis=1), 1, atol=1e-5)
    assert np.array_equal(first.vectors[0], first.vectors[5])
    # A second process-like opener of the same file sees the vectors: nothing is embedded again.
    second = embed_images(clip, images, EmbeddingCache(tmp_path / "emb.sqlite"))
    assert second.computed == 0 and np.allclose(second.vectors, first.vectors[:5], atol=1e-6)
    t1 = embed_texts(clip, ["Two dogs", "A red cup"], cache)
    t2 = embed_texts(clip, ["A red cup", "Two dogs", "Three cats"], cache)
    assert (t1.computed, t2.computed) == (2, 1)
    assert np.allclose(t2.vectors[1], t1.vectors[0], atol=1e-6)


def test_cached_vectors_equal_fresh_ones_and_depend_on_model_id(clip, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    images = _images(3)
    fresh = embed_images(clip, images)
    assert np.allclose(embed_images(clip, images, cache).vectors, fresh.vectors, atol=1e-6)
    other = type(clip)(**{**clip.__dict__, "model_id": "other-model"})
    assert embed_images(other, images, cache).computed == 3


def test_clip_score_is_cosine():
    a, b = np.array([[3.0, 4.0], [1.0, 0.0]]), np.array([[4.0, 3.0], [0.0, 2.0]])
    assert np.allclose(clip_score(a, b), [24 / 25, 0.0])


def _writer(path, start):
    cache = EmbeddingCache(path)
    for i in range(start, start + 50):
        cache.put_many("m", "text", {f"h{i % 60}": np.full(4, i, np.float32)})


def test_two_processes_can_write_the_cache_at_once(tmp_path):
    path = tmp_path / "emb.sqlite"
    EmbeddingCache(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 30)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert EmbeddingCache(path).count() == 60
