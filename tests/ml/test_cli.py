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
