import numpy as np
import pytest

from ml.generation import Cancelled, GenerationConfig, generate

CFG = GenerationConfig(steps=3, batch_size=2)


def _px(img):
    return np.asarray(img, dtype=np.int16)


def test_image_is_reproduced_from_its_seed_whatever_its_batch(generator):
    first = generate(generator, [("Two dogs", 11), ("A red cup", 12), ("A cat on the moon", 13)], CFG).images
    again = generate(generator, [("A cat on the moon", 13)], GenerationConfig(steps=3, batch_size=1)).images
    assert np.abs(_px(first[2].image) - _px(again[0].image)).max() <= 1
    other = generate(generator, [("A cat on the moon", 14)], CFG).images
    assert np.abs(_px(first[2].image) - _px(other[0].image)).max() > 10


def test_settings_come_with_each_image(generator):
    out = generate(
        generator, [("Two dogs", 5)], GenerationConfig(steps=2, guidance_scale=3.0, scheduler="ddim")
    )
    s = out.images[0].settings
    assert (s["steps"], s["guidance_scale"], s["scheduler"], s["seed"]) == (2, 3.0, "DDIMScheduler", 5)
    assert (s["width"], s["height"]) == out.images[0].image.size == (32, 32)
    # Reproduce from the recorded settings alone.
    cfg = GenerationConfig(
        steps=s["steps"],
        guidance_scale=s["guidance_scale"],
        scheduler="ddim",
        width=s["width"],
        height=s["height"],
    )
    again = generate(generator, [("Two dogs", s["seed"])], cfg).images[0]
    assert np.abs(_px(again.image) - _px(out.images[0].image)).max() <= 1


def test_progress_and_cancel_between_batches(generator):
    seen = []
    generate(generator, [("Two dogs", i) for i in range(3)], CFG, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 3), (3, 3)]
    calls = iter([False, True])
    with pytest.raises(Cancelled) as info:
        generate(generator, [("Two dogs", i) for i in range(4)], CFG, should_cancel=lambda: next(calls))
    assert info.value.done == 2


def test_interrupt_stops_within_a_batch(generator):
    steps = []

    def interrupt() -> bool:
        steps.append(1)
        return len(steps) >= 2  # after the second denoising step of the first batch

    with pytest.raises(Cancelled) as info:
        generate(generator, [("Two dogs", i) for i in range(2)], CFG, interrupt=interrupt)
    assert info.value.done == 0 and len(steps) == 2


def test_unknown_scheduler_is_an_error(generator):
    with pytest.raises(ValueError, match="unknown scheduler"):
        generate(generator, [("Two dogs", 1)], GenerationConfig(scheduler="nope"))


def test_no_scheduler_named_means_the_models_own(generator):
    generate(generator, [("Two dogs", 1)], GenerationConfig(steps=2, scheduler="euler"))
    out = generate(generator, [("Two dogs", 1)], GenerationConfig(steps=2))
    assert out.images[0].settings["scheduler"] == "PNDMScheduler"
