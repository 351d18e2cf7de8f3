import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from ml.finetune import (
    FinetuneConfig,
    ModelSample,
    PretrainSample,
    denoising_losses,
    finetune,
    read_pretrain_folder,
    reward_weighted_loss,
)
from ml.generation import GenerationConfig, generate, load_generator


def test_reward_weighted_loss_by_hand():
    model = torch.tensor([1.0, 2.0, 4.0])
    r = torch.tensor([0.5, 0.25, 1.0])
    pre = torch.tensor([3.0, 1.0])
    expected = (0.5 * 1 + 0.25 * 2 + 1.0 * 4) / 3 + 0.7 * (3 + 1) / 2
    assert reward_weighted_loss(model, r, pre, beta=0.7).item() == pytest.approx(expected)
    assert reward_weighted_loss(model, r, None, beta=0.7).item() == pytest.approx(5 / 3)


def test_rewards_scale_each_samples_gradient_and_are_not_differentiated():
    w = torch.tensor([1.5, -0.5], requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
    rewards = torch.tensor([0.8, 0.3], requires_grad=True)

    def grad(r):
        w.grad = None
        reward_weighted_loss((x @ w) ** 2, r, None, beta=1.0).backward()
        return w.grad.clone()

    g = grad(rewards)
    # d/dw of mean_i r_i (x_i·w)^2 = (1/B) Σ r_i · 2 (x_i·w) x_i
    by_hand = sum(rewards[i].item() * 2 * (x[i] @ w).item() * x[i] for i in range(2)) / 2
    assert torch.allclose(g, by_hand)
    assert rewards.grad is None
    # Each sample's contribution is linear in its own weight.
    g1, g2 = grad(torch.tensor([1.0, 0.0])), grad(torch.tensor([0.0, 1.0]))
    assert torch.allclose(g, 0.8 * g1 + 0.3 * g2, atol=1e-6)


def test_denoising_loss_is_mse_to_the_noise_per_sample():
    sched = DDPMScheduler(num_train_timesteps=1000)

    class Unet:  # predicts a constant: loss = mean((c - ε)^2) per sample
        def __call__(self, noisy, t, emb):
            return type("Out", (), {"sample": torch.full_like(noisy, 0.25)})()

    lat, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    out = denoising_losses(Unet(), sched, lat, None, noise, torch.tensor([10, 500]))
    assert torch.allclose(out, ((0.25 - noise) ** 2).mean(dim=(1, 2, 3)))


@pytest.fixture(scope="module")
def samples(generator):
    images = generate(
        generator, [("Two dogs", 1), ("A red cup", 2), ("A cat in the sea", 3)], GenerationConfig(steps=2)
    ).images
    return [ModelSample(g.image, g.prompt, r) for g, r in zip(images, [0.9, 0.1, 0.6], strict=True)]


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_step_trains_only_the_unet_and_checkpoint_generates(mode, tiny_sd, samples, tmp_path):
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    pre = [PretrainSample(s.image, "a photo") for s in samples]
    cfg = FinetuneConfig(mode=mode, max_steps=2, batch_size=2, lr=1e-2, checkpoint_every=1)
    result = finetune(cfg, tiny_sd, samples, tmp_path / "ft", pretrain=pre)
    assert result.steps == 2 and [c["step"] for c in result.curve] == [1, 2]
    assert all(c["pretrain_loss"] is not None and np.isfinite(c["loss"]) for c in result.curve)
    assert result.warnings == []
    ckpt = result.checkpoint
    assert ckpt.name == "checkpoint-2" and (tmp_path / "ft" / "checkpoint-1").exists()
    gen = (
        load_generator(ckpt, device="cpu")
        if mode == "full"
        else load_generator(tiny_sd, lora=ckpt, device="cpu")
    )
    tuned = gen.pipe
    assert _same(_state(base.vae), _state(tuned.vae))
    assert _same(_state(base.text_encoder), _state(tuned.text_encoder))
    if mode == "full":
        assert not _same(_state(base.unet), _state(tuned.unet))
    else:
        assert (ckpt / "pytorch_lora_weights.safetensors").exists()
    base_gen = load_generator(tiny_sd, device="cpu")
    req, gcfg = [("Two dogs", 7)], GenerationConfig(steps=2)
    a = np.asarray(generate(base_gen, req, gcfg).images[0].image, np.int16)
    b = np.asarray(generate(gen, req, gcfg).images[0].image, np.int16)
    assert np.abs(a - b).max() > 0  # the trained weights are what generates


def test_lora_adapter_holds_only_lora_weights_and_base_stays(tiny_sd, samples, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    base = _state(StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None).unet)
    with pytest.warns(UserWarning, match="pre-training"):
        cfg = FinetuneConfig(
            max_steps=1, batch_size=2, lr=1e-2, gradient_checkpointing=True, gradient_accumulation_steps=2
        )
        r = finetune(cfg, tiny_sd, samples, tmp_path / "ft")
    adapter = load_file(str(r.checkpoint / "pytorch_lora_weights.safetensors"))
    assert adapter and all("lora" in k for k in adapter)
    tuned = _state(load_generator(tiny_sd, lora=r.checkpoint, device="cpu").pipe.unet)
    stripped = {k.replace(".base_layer", ""): v for k, v in tuned.items() if "lora_" not in k}
    assert stripped.keys() == base.keys() and _same(base, stripped)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in tuned.items())  # B starts at 0: it trained


def test_the_seed_alone_sets_the_adapter_whatever_the_process_drew_before(tiny_sd, samples, tmp_path):
    """The LoRA adapter's random start comes from the config's seed: two fine-tunes with one seed end
    with the same weights even when the process's global generator stands elsewhere (it did not, and
    two world rounds of one seed learned different things)."""
    from safetensors.torch import load_file

    cfg = FinetuneConfig(mode="lora", max_steps=2, batch_size=2, lr=1e-2, seed=3)
    adapters = []
    for i, global_seed in enumerate((1, 2)):
        torch.manual_seed(global_seed)
        r = finetune(cfg, tiny_sd, samples, tmp_path / f"ft{i}", pretrain=[PretrainSample(s.image, "a photo")
                                                                           for s in samples])
        adapters.append(load_file(str(r.checkpoint / "pytorch_lora_weights.safetensors")))
    assert adapters[0].keys() == adapters[1].keys() and _same(*adapters)
    r = finetune(FinetuneConfig(mode="lora", max_steps=2, batch_size=2, lr=1e-2, seed=4), tiny_sd, samples,
                 tmp_path / "other", pretrain=[PretrainSample(s.image, "a photo") for s in samples])
    assert not _same(adapters[0], load_file(str(r.checkpoint / "pytorch_lora_weights.safetensors")))


def test_resume_continues_step_count_and_optimizer(tiny_sd, samples, tmp_path):
    cfg = FinetuneConfig(mode="lora", max_steps=2, batch_size=2, checkpoint_every=1)
    with warnings.catch_warnings(record=True):
        first = finetune(cfg, tiny_sd, samples, tmp_path / "ft")
    assert first.warnings and "pre-training" in first.warnings[0]
    cfg4 = FinetuneConfig(mode="lora", max_steps=4, batch_size=2, checkpoint_every=2)
    with pytest.warns(UserWarning):
        resumed = finetune(cfg4, tiny_sd, samples, tmp_path / "ft", resume_from=first.checkpoint)
    assert resumed.steps == 4 and [c["step"] for c in resumed.curve] == [1, 2, 3, 4]
    assert json.loads((resumed.checkpoint / "finetune.json").read_text())["step"] == 4
    state = torch.load(resumed.checkpoint / "training_state.pt", weights_only=False)
    assert all(s["step"] == 4 for s in state["optimizer"]["state"].values())
    with pytest.raises(ValueError, match="lora checkpoint"):
        finetune(
            FinetuneConfig(mode="full", max_steps=3),
            tiny_sd,
            samples,
            tmp_path / "x",
            resume_from=first.checkpoint,
        )


def test_pretrain_folder_formats(tmp_path, samples):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    samples[0].image.save(a / "x.png")
    (a / "x.txt").write_text("a dog\n")
    samples[1].image.save(b / "img.png")
    (b / "metadata.jsonl").write_text(json.dumps({"file_name": "img.png", "text": "a cup"}) + "\n")
    assert [(p.image.name, p.caption) for p in read_pretrain_folder(a)] == [("x.png", "a dog")]
    assert [(p.image.name, p.caption) for p in read_pretrain_folder(b)] == [("img.png", "a cup")]
    with pytest.raises(ValueError):
        read_pretrain_folder(tmp_path)


def test_min_snr_weights_cap_only_the_low_noise_steps():
    from ml.finetune import min_snr_weights

    sched = DDPMScheduler(num_train_timesteps=1000)
    t = torch.tensor([0, 100, 500, 999])
    w = min_snr_weights(sched, t, 5.0)
    snr = sched.alphas_cumprod[t] / (1 - sched.alphas_cumprod[t])
    assert torch.allclose(w, torch.clamp(snr, max=5.0) / snr)
    assert w[0] < w[1] < 1.0 and w[2] == w[3] == 1.0  # high noise keeps its full weight


def test_frozen_cache_encodes_each_image_and_caption_once_and_matches_the_encoders(tiny_sd, samples):
    from diffusers import StableDiffusionPipeline

    from ml.finetune import _FrozenCache, _pixels

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd, safety_checker=None)
    calls = {"vae": 0, "text": 0}
    encode, text_forward = pipe.vae.encode, pipe.text_encoder.forward

    def counted_encode(x, *a, **k):
        calls["vae"] += len(x)
        return encode(x, *a, **k)

    def counted_text(ids, *a, **k):
        calls["text"] += len(ids)
        return text_forward(ids, *a, **k)

    pipe.vae.encode, pipe.text_encoder.forward = counted_encode, counted_text
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    cache = _FrozenCache(pipe.vae, pipe.text_encoder, pipe.tokenizer, [s.image for s in samples], size, torch.float32)
    for idx in ([0, 2], [2, 1, 1], [0, 1, 2]):  # epochs revisit samples; a batch may repeat one
        mean, std = cache.latent_dist(idx)
        with torch.no_grad():
            direct = encode(torch.stack([_pixels(samples[i].image, size) for i in idx])).latent_dist
        torch.testing.assert_close(mean, direct.mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(std, direct.std, atol=1e-5, rtol=1e-4)
        texts = [samples[i].prompt for i in idx] + [""]
        states = cache.text_states(texts)
        ids = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            torch.testing.assert_close(states, text_forward(ids)[0], atol=1e-5, rtol=1e-4)
    assert calls == {"vae": 3, "text": 4}  # three images, three prompts and the empty one: once each


class _Killed(Exception):
    pass


@pytest.mark.parametrize("ema", [None, 0.9])
def test_killed_finetune_resumes_to_the_weights_of_an_uninterrupted_run(tiny_sd, samples, tmp_path, ema):
    from safetensors.torch import load_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pre = [PretrainSample(s.image, "a photo") for s in samples]
        cfg = FinetuneConfig(mode="lora", max_steps=5, batch_size=2, lr=1e-2, checkpoint_every=2,
                             caption_dropout=0.5, ema_decay=ema)
        torch.manual_seed(0)  # LoRA's initial A comes from the global generator
        whole = finetune(cfg, tiny_sd, samples, tmp_path / "whole", pretrain=pre)

        def kill_at_3(step, total, loss):
            if step == 3:  # after step 3 was trained, before it was saved: step 3 is lost and redone
                raise _Killed

        torch.manual_seed(0)
        with pytest.raises(_Killed):
            finetune(cfg, tiny_sd, samples, tmp_path / "killed", pretrain=pre, progress=kill_at_3)
        torch.manual_seed(1)  # a fresh worker's generator: the resume state must not depend on it
        resumed = finetune(cfg, tiny_sd, samples, tmp_path / "killed", pretrain=pre, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert resumed.steps == 5 and [c["step"] for c in resumed.curve] == [1, 2, 3, 4, 5]
    assert [c["loss"] for c in resumed.curve] == [c["loss"] for c in whole.curve]
    a = load_file(str(whole.checkpoint / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.checkpoint / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_only_the_newest_checkpoints_stay_and_only_the_newest_can_resume(tiny_sd, samples, tmp_path):
    cfg = FinetuneConfig(mode="lora", max_steps=4, batch_size=2, checkpoint_every=1, keep_checkpoints=2)
    with pytest.warns(UserWarning):
        r = finetune(cfg, tiny_sd, samples, tmp_path / "ft")
    assert sorted(p.name for p in (tmp_path / "ft").iterdir()) == ["checkpoint-3", "checkpoint-4"]
    older = {p.name for p in (tmp_path / "ft" / "checkpoint-3").iterdir()}
    assert {"finetune.json", "pytorch_lora_weights.safetensors"} <= older and "training_state.pt" not in older
    assert (r.checkpoint / "training_state.pt").exists()
    from ml.finetune import latest_checkpoint

    assert latest_checkpoint(tmp_path / "ft") == r.checkpoint


def test_full_checkpoint_saves_the_unet_in_fp16_when_asked(tiny_sd, samples, tmp_path):
    from safetensors.torch import load_file

    sizes = {}
    for dtype in ("fp32", "fp16"):
        cfg = FinetuneConfig(mode="full", max_steps=1, batch_size=2, checkpoint_dtype=dtype)
        with pytest.warns(UserWarning):
            r = finetune(cfg, tiny_sd, samples, tmp_path / dtype)
        weights = r.checkpoint / "unet" / "diffusion_pytorch_model.safetensors"
        sizes[dtype] = weights.stat().st_size
        assert {v.dtype for v in load_file(str(weights)).values()} == {
            torch.float16 if dtype == "fp16" else torch.float32}
        gen = load_generator(r.checkpoint, device="cpu")
        assert gen.pipe.unet.dtype == torch.float32  # loading casts it back
        generate(gen, [("Two dogs", 7)], GenerationConfig(steps=2))
    assert sizes["fp16"] < 0.6 * sizes["fp32"]


def test_latent_cache_on_disk_keeps_the_loss_curve_and_spares_the_vae(tiny_sd, samples, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    from ml.latent_cache import LatentCache

    pre = [PretrainSample(s.image, "a photo") for s in samples]
    cfg = FinetuneConfig(mode="lora", max_steps=3, batch_size=2, lr=1e-2, checkpoint_every=10**9)
    encoded = [0]
    encode = AutoencoderKL.encode

    def counted(self, x, *a, **k):
        encoded[0] += len(x)
        return encode(self, x, *a, **k)

    monkeypatch.setattr(AutoencoderKL, "encode", counted)
    curves = {}
    cache = LatentCache(tmp_path / "latents.sqlite3")
    for run in ("plain", "filling", "reading"):
        torch.manual_seed(0)
        encoded[0] = 0
        r = finetune(cfg, tiny_sd, samples, tmp_path / run, pretrain=pre,
                     latent_cache=None if run == "plain" else cache)
        curves[run] = [c["loss"] for c in r.curve]
        if run == "filling":
            # the pre-training pairs are the same three images: stored by content, they are encoded once
            assert encoded[0] == 3 and cache.count() == 3
        if run == "reading":
            assert encoded[0] == 0  # every latent came from the disk
    assert curves["filling"] == curves["plain"]
    np.testing.assert_allclose(curves["reading"], curves["plain"], rtol=0, atol=1e-6)


def test_fused_lora_generates_what_the_unfused_adapter_does(tiny_sd, samples, tmp_path):
    cfg = FinetuneConfig(mode="lora", max_steps=2, batch_size=2, lr=5e-2, checkpoint_every=10**9)
    with pytest.warns(UserWarning):
        r = finetune(cfg, tiny_sd, samples, tmp_path / "ft")
    plain = load_generator(tiny_sd, lora=r.checkpoint, device="cpu")
    fused = load_generator(tiny_sd, lora=r.checkpoint, device="cpu", fuse_lora=True)
    assert any("lora_" in k for k in fused.pipe.unet.state_dict()) is False
    assert any("lora_" in k for k in plain.pipe.unet.state_dict())
    base = load_generator(tiny_sd, device="cpu")
    gen = torch.Generator().manual_seed(0)
    dim = plain.pipe.unet.config.cross_attention_dim
    unet_in = (torch.randn(2, 4, 8, 8, generator=gen), torch.tensor([10, 700]), torch.randn(2, 77, dim, generator=gen))
    with torch.no_grad():
        out_plain, out_fused, out_base = (g.pipe.unet(*unet_in).sample for g in (plain, fused, base))
    torch.testing.assert_close(out_fused, out_plain, atol=1e-5, rtol=1e-4)
    assert (out_plain - out_base).abs().max() > 1e-3
    req, gcfg = [("Two dogs", 7), ("A red cup", 8)], GenerationConfig(steps=2)
    a = [np.asarray(g.image, np.int16) for g in generate(plain, req, gcfg).images]
    b = [np.asarray(g.image, np.int16) for g in generate(fused, req, gcfg).images]
    c = [np.asarray(g.image, np.int16) for g in generate(base, req, gcfg).images]
    assert max(np.abs(x - y).max() for x, y in zip(a, b, strict=True)) <= 1  # uint8 rounding at most
    assert max(np.abs(x - y).max() for x, y in zip(a, c, strict=True)) > 1  # and the adapter does show


def test_lazy_images_are_read_once_when_first_needed_and_decode_threads_change_nothing(tiny_sd, samples,
                                                                                        tmp_path):
    import io

    class Stored:  # what the worker passes: bytes fetched from storage on demand
        reads: dict[int, int] = {}

        def __init__(self, n, data):
            self.n, self.data = n, data

        def read_bytes(self):
            Stored.reads[self.n] = Stored.reads.get(self.n, 0) + 1
            return self.data

    def png(image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()

    lazy = [ModelSample(Stored(i, png(s.image)), s.prompt, s.reward) for i, s in enumerate(samples)]
    cfg = FinetuneConfig(mode="lora", max_steps=3, batch_size=2, lr=1e-2, checkpoint_every=10**9)
    curves = []
    for run, (data, workers) in enumerate([(samples, 0), (lazy, 0), (lazy, 2)]):
        Stored.reads = {}
        torch.manual_seed(0)
        with pytest.warns(UserWarning):
            r = finetune(dataclasses.replace(cfg, data_workers=workers), tiny_sd, data, tmp_path / str(run))
        curves.append([c["loss"] for c in r.curve])
        if data is lazy:
            assert Stored.reads == {0: 1, 1: 1, 2: 1}  # each read once, when the VAE first needed it
    assert curves[0] == curves[1] == curves[2]  # PNG is lossless; threads keep the order


def test_8bit_adam_uses_bitsandbytes_when_installed_and_says_so_when_not(tiny_sd, samples, tmp_path, monkeypatch):
    import sys
    import types

    cfg = FinetuneConfig(mode="lora", max_steps=1, batch_size=2, use_8bit_adam=True, checkpoint_every=10**9)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    with pytest.raises(ValueError, match="bitsandbytes"):
        finetune(cfg, tiny_sd, samples, tmp_path / "a")
    made = []

    class AdamW8bit(torch.optim.AdamW):  # stands in for bitsandbytes' (CUDA only)
        def __init__(self, *a, **k):
            made.append(k)
            super().__init__(*a, **k)

    monkeypatch.setitem(sys.modules, "bitsandbytes", types.SimpleNamespace(optim=types.SimpleNamespace(
        AdamW8bit=AdamW8bit)))
    with pytest.warns(UserWarning):
        finetune(cfg, tiny_sd, samples, tmp_path / "b")
    assert made and made[0]["betas"] == (0.9, 0.999)


def test_lora_targets_and_min_timestep_choose_what_trains(tiny_sd, samples, tmp_path):
    from safetensors.torch import load_file

    pre = [PretrainSample(s.image, "a photo") for s in samples]
    cfg = FinetuneConfig(mode="lora", max_steps=2, batch_size=2, lr=1e-2, checkpoint_every=10,
                         lora_targets=r".*attn2\.(to_k|to_v)", min_timestep=500)

    def run(name, c):
        torch.manual_seed(0)  # LoRA's initial A comes from the global generator
        return finetune(c, tiny_sd, samples, tmp_path / name, pretrain=pre)

    kv = run("kv", cfg)
    keys = load_file(str(kv.checkpoint / "pytorch_lora_weights.safetensors")).keys()
    assert keys and all("attn2.to_k" in k or "attn2.to_v" in k for k in keys), sorted(keys)[:4]
    every = run("all", dataclasses.replace(cfg, lora_targets=None))
    all_keys = load_file(str(every.checkpoint / "pytorch_lora_weights.safetensors")).keys()
    assert any("attn1" in k for k in all_keys) and any("to_q" in k for k in all_keys)
    # same adapters, seed and data order; only the noise levels drawn differ, and with them the losses
    low = run("low", dataclasses.replace(cfg, min_timestep=0))
    assert [c["loss"] for c in kv.curve] != [c["loss"] for c in low.curve]
    with pytest.raises(ValueError, match="min_timestep"):
        finetune(dataclasses.replace(cfg, min_timestep=-1), tiny_sd, samples, tmp_path / "neg")
    with pytest.raises(ValueError, match="leaves no timestep"):
        finetune(dataclasses.replace(cfg, min_timestep=10_000), tiny_sd, samples, tmp_path / "high", pretrain=pre)


def test_a_fine_tune_starts_from_a_saved_adapter_and_refuses_one_that_does_not_fit(tiny_sd, samples, tmp_path):
    """A later round starts from the generator of the round before: a LoRA fine-tune continues its
    adapter, a full one starts from the weights with it fused; an adapter of another shape is refused."""
    from safetensors.torch import load_file

    from ml.generation import load_generator

    cfg = FinetuneConfig(mode="lora", max_steps=2, batch_size=2, lr=5e-2, checkpoint_every=10, warmup_steps=0)
    torch.manual_seed(0)
    first = finetune(cfg, tiny_sd, samples, tmp_path / "first").checkpoint
    trained = load_file(str(first / "pytorch_lora_weights.safetensors"))
    # a step too small to move anything: what is saved is what it started from
    still = dataclasses.replace(cfg, max_steps=1, lr=1e-12, init_adapter=str(first))
    torch.manual_seed(1)  # another fresh initialisation, which the saved adapter must replace
    cont = load_file(str(finetune(still, tiny_sd, samples, tmp_path / "cont").checkpoint
                         / "pytorch_lora_weights.safetensors"))
    assert cont.keys() == trained.keys()
    assert all(torch.allclose(cont[k], trained[k], atol=1e-6) for k in trained)
    torch.manual_seed(1)
    fresh = load_file(str(finetune(dataclasses.replace(still, init_adapter=None), tiny_sd, samples,
                                   tmp_path / "fresh").checkpoint / "pytorch_lora_weights.safetensors"))
    assert any(not torch.allclose(fresh[k], trained[k], atol=1e-4) for k in trained)

    full = finetune(dataclasses.replace(still, mode="full"), tiny_sd, samples, tmp_path / "full").checkpoint
    fused = load_generator(tiny_sd, lora=first, device="cpu", fuse_lora=True).pipe.unet.state_dict()
    saved = load_generator(full, device="cpu").pipe.unet.state_dict()
    assert all(torch.allclose(saved[k], fused[k], atol=1e-5) for k in fused)
    base = load_generator(tiny_sd, device="cpu").pipe.unet.state_dict()
    assert any(not torch.allclose(saved[k], base[k], atol=1e-4) for k in base)

    with pytest.raises(ValueError, match="rank"):
        finetune(dataclasses.replace(still, lora_rank=4), tiny_sd, samples, tmp_path / "r4")
    with pytest.raises(ValueError, match="other modules"):
        finetune(dataclasses.replace(still, lora_targets=r".*attn2\.(to_k|to_v)"), tiny_sd, samples, tmp_path / "kv")
    with pytest.raises(ValueError, match="cannot read"):
        finetune(dataclasses.replace(still, init_adapter=str(tmp_path)), tiny_sd, samples, tmp_path / "none")
