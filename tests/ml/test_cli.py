import json

import pytest
from click.testing import CliRunner

from ml.cli import cli


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def runner():
    return CliRunner()


def test_prompts_writes_jsonl_with_attributes(runner, tmp_path):
    out = tmp_path / "p.jsonl"
    res = runner.invoke(cli, ["prompts", "--size", "20", "--seed", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = _jsonl(out)
    assert len(rows) == 20 and {"text", "category", "object", "count", "color", "background", "split"} <= set(
        rows[0]
    )
    res = runner.invoke(cli, ["prompts", "--category", "count", "--split", "unseen"])
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 5 * 6 and all(r["category"] == "count" and r["split"] == "unseen" for r in rows)


def test_prompts_parse_rejects_bad_lines(runner, tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("Two dogs\nA spaceship\n")
    res = runner.invoke(cli, ["prompts", "--parse", str(f)])
    assert res.exit_code != 0 and "not probe prompts" in res.output


def test_generate_then_train_reward_then_score(runner, tmp_path, tiny_sd, tiny_clip):
    prompts = tmp_path / "p.jsonl"
    runner.invoke(cli, ["prompts", "--size", "8", "--out", str(prompts)])
    gen_dir = tmp_path / "gen"
    res = runner.invoke(
        cli,
        ["generate", "--model", str(tiny_sd), "--prompts", str(prompts), "--images-per-prompt", "3",
         "--steps", "2", "--out", str(gen_dir), "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    manifest = _jsonl(gen_dir / "manifest.jsonl")
    assert len(manifest) == 24 and (gen_dir / manifest[0]["file"]).exists()
    assert len({m["seed"] for m in manifest}) == 24 and manifest[0]["settings"]["steps"] == 2

    labels = gen_dir / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"image": m["file"], "prompt": m["prompt"], "label": ["good", "bad", "skip"][i % 3]})
            + "\n"
            for i, m in enumerate(manifest)
        )
    )
    cache = tmp_path / "emb.sqlite"
    common = ["--clip", str(tiny_clip), "--cache", str(cache), "--device", "cpu"]
    res = runner.invoke(
        cli,
        ["train-reward", "--labels", str(labels), "--out", str(tmp_path / "rm"), "--hidden", "32",
         "--max-epochs", "2", "--val-fraction", "0.25", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["n_train"] + report["n_val"] == 16 and "clip_auc" in report["metrics"]
    assert json.loads((tmp_path / "rm" / "config.json").read_text())["config"]["hidden"] == 32

    scored = tmp_path / "scored.jsonl"
    res = runner.invoke(
        cli,
        ["score", "--reward", str(tmp_path / "rm"), "--manifest", str(gen_dir / "manifest.jsonl"),
         "--out", str(scored), *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = _jsonl(scored)
    assert len(rows) == 24 and all(0 < r["reward"] < 1 and -1 <= r["clip_score"] <= 1 for r in rows)

    res = runner.invoke(cli, ["embed", "--manifest", str(gen_dir / "manifest.jsonl"), *common])
    assert res.exit_code == 0 and json.loads(res.stdout)["images_embedded"] == 0  # all cached already


def test_bad_arguments_exit_non_zero(runner, tmp_path, tiny_clip):
    assert runner.invoke(cli, ["generate", "--prompts", "nope.jsonl"]).exit_code != 0
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"image": "missing.png", "prompt": "Two dogs", "label": "good"}\n')
    res = runner.invoke(
        cli, ["train-reward", "--labels", str(labels), "--clip", str(tiny_clip), "--out", "x"]
    )
    assert res.exit_code != 0 and "not found" in res.output
    labels.write_text("{not json\n")
    res = runner.invoke(
        cli, ["train-reward", "--labels", str(labels), "--clip", str(tiny_clip), "--out", "x"]
    )
    assert res.exit_code != 0 and "not JSON" in res.output
    assert runner.invoke(cli, ["prompts", "--category", "shape"]).exit_code == 2


def test_finetune_then_best_of_n_with_the_adapter(runner, tmp_path, tiny_sd, tiny_clip):
    import torch

    from ml.reward import RewardConfig, RewardMLP, RewardModel, save_reward

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"text": "Two dogs"}\n{"text": "A red cup"}\n')
    gen_dir = tmp_path / "gen"
    res = runner.invoke(
        cli,
        [
            "generate",
            "--model",
            str(tiny_sd),
            "--prompts",
            str(prompts),
            "--steps",
            "2",
            "--out",
            str(gen_dir),
        ],
    )
    assert res.exit_code == 0, res.output
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(
            json.dumps({"image": str(gen_dir / m["file"]), "prompt": m["prompt"], "reward": 0.8}) + "\n"
            for m in _jsonl(gen_dir / "manifest.jsonl")
        )
    )
    pre = tmp_path / "pre"
    pre.mkdir()
    (gen_dir / "000000_seed0.png").rename(pre / "a.png")
    (pre / "a.txt").write_text("a photo of a dog")
    res = runner.invoke(
        cli,
        ["finetune", "--model", str(tiny_sd), "--samples", str(samples), "--out", str(tmp_path / "ft"),
         "--max-steps", "2", "--batch-size", "2", "--mode", "lora", "--pretrain", str(pre)],
    )  # fmt: skip
    assert res.exit_code != 0 and "not found" in res.output  # the moved image is reported by line
    samples.write_text(
        "".join(line + "\n" for line in samples.read_text().splitlines() if "seed0" not in line)
    )
    res = runner.invoke(
        cli,
        ["finetune", "--model", str(tiny_sd), "--samples", str(samples), "--out", str(tmp_path / "ft"),
         "--max-steps", "2", "--batch-size", "2", "--mode", "lora", "--pretrain", str(pre)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "estimate: memory" in res.output  # printed before the run starts
    info = json.loads(res.stdout.strip().splitlines()[-1])
    res = runner.invoke(
        cli,
        ["finetune", "--model", str(tiny_sd), "--samples", str(samples), "--out", str(tmp_path / "paper"),
         "--preset", "paper", "--max-steps", "3", "--estimate-only"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "UNet" in res.output and not (tmp_path / "paper").exists()
    assert "256 samples per step" in res.output  # the paper's 256, and no pre-training pairs given
    assert info["steps"] == 2 and info["warnings"] == [] and len(_jsonl(tmp_path / "ft" / "curve.jsonl")) == 2

    torch.manual_seed(0)
    rm = RewardModel(RewardMLP(32, 32, 16), RewardConfig(hidden=16), 32, 32)
    save_reward(rm, tmp_path / "rm")
    res = runner.invoke(
        cli,
        ["best-of-n", "--model", str(tiny_sd), "--lora", info["checkpoint"], "--reward", str(tmp_path / "rm"),
         "--clip", str(tiny_clip), "--prompts", str(prompts), "--n", "3", "--k", "1", "--steps", "2",
         "--out", str(tmp_path / "bon")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    kept = _jsonl(tmp_path / "bon" / "manifest.jsonl")
    assert [k["prompt"] for k in kept] == ["Two dogs", "A red cup"] and all(k["rank"] == 0 for k in kept)
    assert kept[0]["settings"]["lora"] == info["checkpoint"]
    bad = runner.invoke(
        cli,
        ["best-of-n", "--model", str(tiny_sd), "--reward", str(tmp_path / "rm"), "--clip", str(tiny_clip),
         "--prompts", str(prompts), "--n", "2", "--k", "3", "--out", str(tmp_path / "x")],
    )  # fmt: skip
    assert bad.exit_code == 2 and "k <= n" in bad.output
