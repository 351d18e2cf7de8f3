"""Prompt sets from the paper's templates, from a list, and from uploaded JSONL / CSV files."""

from __future__ import annotations

from tests.conftest import bearer


def _upload(client, acct, name, filename, content, **form):
    return client.post(
        "/api/v1/prompt-sets/upload",
        headers=bearer(acct),
        files={"file": (filename, content.encode(), "text/plain")},
        data={"name": name, **form},
    )


def test_template_set_has_the_paper_categories_and_splits(client, researcher):
    r = client.post("/api/v1/prompt-sets", headers=bearer(researcher), json={"name": "paper", "template": {}})
    assert r.status_code == 201 and r.json()["prompt_count"] == 2774
    progress = client.get(f"/api/v1/prompt-sets/{r.json()['id']}", headers=bearer(researcher)).json()["progress"]
    assert {"count", "color", "background", "combination", "total"} <= set(progress)
    assert progress["total"]["prompts"] == 2774
    prompts = client.get(
        f"/api/v1/prompt-sets/{r.json()['id']}/prompts", headers=bearer(researcher), params={"limit": 5000}
    ).json()
    # a training set holds the unseen objects out (the paper keeps them for evaluation)
    assert {p["split"] for p in prompts} == {"seen"}
    assert r.json()["source"]["template"]["splits"] == ["seen"]


def test_evaluation_template_set_is_the_papers_120_balanced_prompts(client, researcher):
    from collections import Counter

    h = bearer(researcher)
    r = client.post("/api/v1/prompt-sets", headers=h,
                    json={"name": "eval", "purpose": "evaluation", "template": {"size": 120}})
    assert r.status_code == 201 and r.json()["prompt_count"] == 120
    prompts = client.get(f"/api/v1/prompt-sets/{r.json()['id']}/prompts", headers=h, params={"limit": 500}).json()
    counts = Counter((p["split"], p["category"]) for p in prompts)
    assert counts == {(s, c): 15 for s in ("seen", "unseen") for c in ("count", "color", "background", "combination")}


def test_list_and_validation(client, researcher):
    h = bearer(researcher)
    r = client.post("/api/v1/prompt-sets", headers=h, json={"name": "l", "prompts": ["Two dogs", "Two  dogs", "x"]})
    assert (
        r.status_code == 201 and r.json()["prompt_count"] == 2 and r.json()["source"]["list"]["duplicates_dropped"] == 1
    )
    both = client.post("/api/v1/prompt-sets", headers=h, json={"name": "b", "prompts": ["a"], "template": {}})
    assert both.status_code == 422 and "either" in both.json()["error"]["message"]
    dup = client.post("/api/v1/prompt-sets", headers=h, json={"name": "l", "prompts": ["a"]})
    assert dup.status_code == 409
    blank = client.post("/api/v1/prompt-sets", headers=h, json={"name": "z", "prompts": ["ok", "  "]})
    assert blank.status_code == 422 and "prompt 1 is blank" in blank.json()["error"]["message"]


def test_upload_jsonl_and_csv(client, researcher):
    r = _upload(
        client,
        researcher,
        "j",
        "p.jsonl",
        '{"text": "Two dogs"}\n"A red cat"\n\n{"prompt": "A dog in the city"}\n',
        labels_per_image="3",
    )
    assert r.status_code == 201 and r.json()["prompt_count"] == 3 and r.json()["labels_per_image"] == 3
    assert r.json()["source"]["upload"]["filename"] == "p.jsonl"
    r = _upload(client, researcher, "c", "p.csv", 'id,text\n1,Two dogs\n2,"Three red boxes, please"\n')
    assert r.status_code == 201 and r.json()["prompt_count"] == 2
    bad = _upload(client, researcher, "bad", "p.jsonl", '{"text": "ok"}\n{not json\n')
    assert bad.status_code == 422 and "line 2" in bad.json()["error"]["message"]
    header_only = _upload(client, researcher, "h", "p.csv", "text\n")
    assert header_only.status_code == 422 and "no prompts" in header_only.json()["error"]["message"]
    listed = [p["name"] for p in client.get("/api/v1/prompt-sets", headers=bearer(researcher)).json()]
    assert listed == ["j", "c"]
