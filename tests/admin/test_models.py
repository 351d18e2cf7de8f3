"""Models page: lineage indentation, scalar metrics, and training curves from whatever series exist."""

from __future__ import annotations

import re

from app.db.models import ModelVersion
from tests.admin.html import block


def _version(db, kind, name, parent=None, metrics=None, **kw) -> ModelVersion:
    v = ModelVersion(
        kind=kind,
        name=name,
        mode=kw.pop("mode", "base"),
        parent_id=parent.id if parent else None,
        artifact_url=kw.pop("artifact_url", "hub:sd15"),
        metrics=metrics or {},
        **kw,
    )
    db.add(v)
    db.flush()
    return v


def test_lineage_metrics_and_curves(client, admin, db):
    base = _version(db, "generator", "sd-1.5 <base>")
    r1 = _version(
        db,
        "reward",
        "reward #1",
        mode="mlp",
        label_snapshot={"count": 2810, "max_rating_id": 9312},
        hyperparams={"lambda_pc": 0.5},
        code_version="abc123",
        metrics={
            "val_mse": 0.125,
            "auc": 0.91,
            "pairwise_accuracy": 0.8,
            "best_epoch": 2,
            "by_group": {"seen": {"n": 10, "accuracy": 0.9}, "unseen": {"n": 4, "accuracy": 0.75}},
            "history": [{"epoch": e, "train_loss": 1 / (e + 1), "val_mse": 0.3 - e / 20} for e in range(4)],
        },
    )
    r2 = _version(db, "reward", "reward #2", parent=r1, mode="mlp")
    tuned = _version(
        db,
        "generator",
        "tuned",
        parent=base,
        mode="lora",
        metrics={
            "curve": [{"step": s, "loss": 0.5 - s / 1000, "reward_weight": 0.7} for s in range(0, 100, 10)],
            "final_loss": 0.41,
            "warnings": ["lr high"],
        },
    )
    _version(db, "generator", "tuned again", parent=tuned, mode="lora")
    # junk that must not break the page
    _version(
        db,
        "reward",
        "odd",
        metrics={
            "history": [{"epoch": 0, "x": "nan?"}, 3, None],
            "curve": "oops",
            "weird": [1, "a"],
            "flag": True,
            "big": None,
        },
    )
    db.commit()

    page = client.get("/admin/models").text
    depths = dict(re.findall(r'data-model-id="(\d+)" data-depth="(\d+)"', page))
    assert depths == {
        str(base.id): "0",
        str(tuned.id): "1",
        str(tuned.id + 1): "2",
        str(r1.id): "0",
        str(r2.id): "1",
        str(tuned.id + 2): "0",
    }
    # depth-first order: base, tuned, tuned again, reward #1, reward #2, odd
    assert [int(i) for i in re.findall(r'data-model-id="(\d+)"', page)] == [
        base.id,
        tuned.id,
        tuned.id + 1,
        r1.id,
        r2.id,
        tuned.id + 2,
    ]
    assert "sd-1.5 &lt;base&gt;" in page

    reward = page.split(f'data-model-id="{r1.id}"')[1].split('<li class="version')[0]
    assert '<td class="num" data-metric="auc">0.91</td>' in reward
    assert '<td class="num" data-metric="val_mse">0.125</td>' in reward
    assert "history: train_loss" in reward and "history: val_mse" in reward
    assert reward.count("<polyline") == 2  # two series over epochs
    assert "by_group" in reward and "0.75" in reward and "abc123" in reward and "2810" in reward
    gen = page.split(f'data-model-id="{tuned.id}"')[1].split('<li class="version')[0]
    assert gen.count("<polyline") == 2 and "curve: loss" in gen and ">step<" in gen
    assert "warnings: lr high" in gen
    odd = page.split(f'data-model-id="{tuned.id + 2}"')[1].split('<li class="version')[0]
    assert "<polyline" not in odd
    assert block(page, "data-metric", "final_loss", tag="td") == "0.41"
