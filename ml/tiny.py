"""Model folders with random weights, in the exact on-disk formats of the real models.

`write_tiny_sd` / `write_tiny_clip` make models small enough for CPU tests and the demo (a 32 px
image in well under a second); the `full_size=True` variants build the Stable Diffusion 1.5 and CLIP
ViT-L/14 architectures for benchmarks on a GPU. Both are loaded by the same loaders as
`stable-diffusion-v1-5` and `openai/clip-vit-large-patch14`, so no code path is test-only.

The tokenizer is trained here with the `tokenizers` BPE trainer on the prompt vocabulary (no
download possible) and written as CLIP's `vocab.json` + `merges.txt`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import torch

from ml.prompts import PAPER_VOCABULARY, all_prompts

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_EXTRA_WORDS = (
    "a an the in on of and with photo picture image colored coloured one two three four five six "
    "seven eight nine ten"
)


@dataclass
class TinyConfig:
    seed: int = field(default=0, metadata={"help": "seed of the random weights"})
    full_size: bool = field(
        default=False, metadata={"help": "SD-1.5 / ViT-L/14 architectures (random weights) instead of tiny"}
    )
    vocab_size: int = field(default=1000, metadata={"help": "BPE vocabulary size of the trained tokenizer"})


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's byte-to-printable-character table: every byte must be a base symbol of the vocabulary.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def training_corpus() -> list[str]:
    texts = [p.text.lower() for ps in all_prompts(PAPER_VOCABULARY).values() for p in ps[::7]]
    return texts + [_EXTRA_WORDS]


def write_clip_tokenizer(out_dir: str | Path, vocab_size: int = 1000, model_max_length: int = 77) -> Path:
    """Train a BPE tokenizer on the prompt vocabulary and save it in CLIP's format."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = list(_bytes_to_unicode().values())
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=base, end_of_word_suffix="</w>", show_progress=False
    )
    tok.train_from_iterator(training_corpus(), trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    # CLIP's layout: bytes, bytes + end-of-word, merged symbols, then the two special tokens.
    vocab: dict[str, int] = {}
    for sym in base + [b + "</w>" for b in base] + ["".join(m.split(" ")) for m in merges] + [_BOS, _EOS]:
        vocab.setdefault(sym, len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": _BOS, "eos_token": _EOS, "unk_token": _EOS, "pad_token": _EOS})
    )
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": model_max_length,
                "bos_token": _BOS,
                "eos_token": _EOS,
                "unk_token": _EOS,
                "pad_token": _EOS,
                "do_lower_case": True,
            }
        )
    )
    return out


def _token_ids(tokenizer_dir: Path) -> tuple[int, int, int]:
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text())
    return len(vocab), vocab[_BOS], vocab[_EOS]


class _TextSizes(TypedDict):
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int
    projection_dim: int


def _text_config(config: TinyConfig, vocab: int, bos: int, eos: int, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    if config.full_size:
        sizes = _TextSizes(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            vocab_size=49408,
            projection_dim=projection_dim or 768,
        )
    else:
        sizes = _TextSizes(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=vocab,
            projection_dim=projection_dim or 32,
        )
    return CLIPTextConfig(
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        **sizes,
    )


def write_tiny_sd(out_dir: str | Path, config: TinyConfig | None = None) -> Path:
    """A Stable Diffusion pipeline folder with random weights (tiny: 32 px images)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    config = config or TinyConfig()
    out = Path(out_dir)
    torch.manual_seed(config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = write_clip_tokenizer(tmp, config.vocab_size)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        vocab, bos, eos = _token_ids(tok_dir)
    text_config = _text_config(config, vocab, bos, eos)
    if config.full_size:
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )
    else:
        # Latents of 16x16 decoded by a 2-level VAE: 32x32 images.
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            norm_num_groups=8,
            attention_head_dim=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        vae = AutoencoderKL(
            block_out_channels=(16, 32),
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=8,
            layers_per_block=1,
            sample_size=32,
        )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # mypy resolves diffusers' lazy top-level export to its dummy placeholder class, which lacks the method
    pipe.save_pretrained(out)  # type: ignore[attr-defined]
    return out


def write_tiny_clip(out_dir: str | Path, config: TinyConfig | None = None) -> Path:
    """A CLIP model + processor folder with random weights (tiny: 32 px input, 32-d embeddings)."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    config = config or TinyConfig()
    out = Path(out_dir)
    torch.manual_seed(config.seed)
    write_clip_tokenizer(out, config.vocab_size)
    vocab, bos, eos = _token_ids(out)
    if config.full_size:
        vision = CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            patch_size=14,
            image_size=224,
            projection_dim=768,
            hidden_act="quick_gelu",
        )
        image_size, dim = 224, 768
    else:
        vision = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            patch_size=8,
            image_size=32,
            projection_dim=32,
            hidden_act="quick_gelu",
        )
        image_size, dim = 32, 32
    clip_config = CLIPConfig(
        text_config=_text_config(config, vocab, bos, eos, dim).to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=dim,
    )
    return save_clip_folder(CLIPModel(clip_config), out, out, image_size)


def save_clip_folder(model, tokenizer_dir: str | Path, out_dir: str | Path, image_size: int) -> Path:
    """Write a CLIP model with its tokenizer and image processor in openai/clip-vit-* layout."""
    import shutil

    from transformers import CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if Path(tokenizer_dir).resolve() != out.resolve():
        for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
            shutil.copy(Path(tokenizer_dir) / name, out / name)
    model.save_pretrained(out)
    # Saved under the canonical class name so AutoImageProcessor picks the backend that is installed.
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor.save_pretrained(out)
    cfg_path = out / "preprocessor_config.json"
    pre = json.loads(cfg_path.read_text())
    pre["image_processor_type"] = "CLIPImageProcessor"
    cfg_path.write_text(json.dumps(pre, indent=2))
    CLIPTokenizer.from_pretrained(out)  # fail here, not in a worker, if the format is off
    return out
