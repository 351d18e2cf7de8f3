"""Evaluations: win / tie / loss and 7-of-9 style agreement per group, and a pair's votes in both terms."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import User
from app.evaluations.service import evaluation_results
from tests.admin import factories as f
from tests.admin.html import block, figure


def _seed(db, make_user):
    users = [make_user("annotator", username=f"rater{i}") for i in range(3)]
    ps = f.prompt_set(db, "eval set", purpose="evaluation")
    count = f.prompt(db, ps, "two <b>dogs</b>", "count", "seen")
    color = f.prompt(db, ps, "a green cat", "color", "unseen")
    ev = f.evaluation(db, ps, "tuned vs base", votes=3)  # agreement threshold: ceil(7 * 3 / 9) = 3
    p1 = f.comparison(db, ev, count, f.image(db, count), f.image(db, count))
    p2 = f.comparison(db, ev, color, f.image(db, color), f.image(db, color))
    p3 = f.comparison(db, ev, count, f.image(db, count), f.image(db, count))
    for u, al, fi, left_is_a in zip(
        users, ("b", "b", "b"), ("b", "tie", "a"), (False, True, True), strict=True
    ):
        f.vote(db, p1, u.id, al, fi, left_is_a=left_is_a)
    for u, al, fi in zip(users, ("a", "a", "tie"), ("a", "a", "a"), strict=True):
        f.vote(db, p2, u.id, al, fi)
    f.vote(db, p3, users[0].id, "b", "b")  # incomplete: not counted
    db.commit()
    return ev, p1, users


def test_evaluation_results_page(client, admin, db, make_user):
    ev, p1, _ = _seed(db, make_user)
    listing = client.get("/admin/evaluations").text
    row = block(listing, "data-evaluation-id", str(ev.id))
    assert "2 / 3" in row and "50% / 0% / 50%" in row  # complete pairs; alignment win / tie / loss

    page = client.get(f"/admin/evaluations/{ev.id}").text
    assert figure(page, "complete") == "2 / 3" and figure(page, "votes") == "7"
    res = {r.group: r for r in evaluation_results(db, ev.id).results}
    for group, question in (
        ("all", "alignment"),
        ("all", "fidelity"),
        ("count", "alignment"),
        ("unseen", "fidelity"),
    ):
        row = page.split(f'data-group="{group}" data-question="{question}"')[1].split("</tr>")[0]
        q = getattr(res[group], question)
        assert figure(row, "win").startswith(f"{100 * q.win.share:.0f}%")
        assert figure(row, "loss").startswith(f"{100 * q.loss.share:.0f}%")
    # by hand: alignment p1 win (3 of 3 agree), p2 loss (2-1, no agreement) -> 50 / 0 / 50, agreed 1 of 2
    all_al = page.split('data-group="all" data-question="alignment"')[1].split("</tr>")[0]
    assert figure(all_al, "win").startswith("50% [") and figure(all_al, "tie").startswith("0% [")
    assert figure(all_al, "agreed") == "50% (1 win, 0 tie, 0 loss of 2)"
    all_fi = page.split('data-group="all" data-question="fidelity"')[1].split("</tr>")[0]
    assert figure(all_fi, "agreed") == "50% (0 win, 0 tie, 1 loss of 2)"
    assert figure(all_fi, "tie").startswith("50%")
    assert 'class="seg-win"' in page and 'class="seg-loss"' in page  # stacked SVG bars
    assert "two &lt;b&gt;dogs&lt;/b&gt;" in page
    assert f'href="/admin/comparisons/{p1.id}"' in page


def test_pair_page_shows_votes_in_both_terms(client, admin, db, make_user):
    ev, p1, users = _seed(db, make_user)
    page = client.get(f"/admin/comparisons/{p1.id}").text
    assert (
        f'src="/api/v1/images/{p1.image_a_id}/file"' in page
        and f'src="/api/v1/images/{p1.image_b_id}/file"' in page
    )
    pseudonyms = [db.scalar(select(User.pseudonym).where(User.id == u.id)) for u in users]
    rows = [page.split(f"<code>{p}</code>")[1].split("</tr>")[0] for p in pseudonyms]
    assert "rater0" not in page  # pseudonyms only
    # rater0 saw the candidate on the left and chose it for both questions
    assert [
        figure(rows[0], k) for k in ("left", "alignment-seen", "alignment", "fidelity-seen", "fidelity")
    ] == ["candidate", "left", "candidate", "left", "candidate"]
    assert [figure(rows[1], k) for k in ("left", "alignment-seen", "fidelity-seen", "fidelity")] == [
        "baseline",
        "right",
        "tie",
        "tie",
    ]
    assert [figure(rows[2], k) for k in ("fidelity-seen", "fidelity")] == ["left", "baseline"]
    assert client.get("/admin/comparisons/999999").status_code == 404


def _seed_nine(db, make_user):
    """Nine raters. Count: 10 pairs, 8 of 9 prefer the candidate's alignment and the baseline's fidelity.
    Colour: 2 pairs, one won and one lost by 5-4 (no 7-of-9 agreement)."""
    raters = [make_user("annotator", username=f"nine{i}") for i in range(9)]
    ps = f.prompt_set(db, "nine set", purpose="evaluation")
    count = f.prompt(db, ps, "three boxes", "count")
    color = f.prompt(db, ps, "a red tree", "color")
    ev = f.evaluation(db, ps, "nine raters", votes=9)
    for _ in range(10):
        c = f.comparison(db, ev, count, f.image(db, count), f.image(db, count))
        for i, u in enumerate(raters):
            f.vote(db, c, u.id, "b" if i < 8 else "a", "a" if i < 8 else "b")
    for winner in ("b", "a"):
        c = f.comparison(db, ev, color, f.image(db, color), f.image(db, color))
        for i, u in enumerate(raters):
            other = "a" if winner == "b" else "b"
            f.vote(db, c, u.id, winner if i < 5 else other, "tie")
    db.commit()
    return ev


def test_verdict_and_agreement_per_row_in_the_api(client, db, make_user, researcher):
    from tests.conftest import bearer

    ev = _seed_nine(db, make_user)
    body = client.get(f"/api/v1/evaluations/{ev.id}", headers=bearer(researcher)).json()
    assert body["agreement_threshold"] == 7
    rows = {r["group"]: r for r in body["results"]}
    count, color, total = rows["count"], rows["color"], rows["all"]
    # 10 of 10 decisive pairs won: interval [72%, 100%] lies above one half
    assert count["alignment"]["verdict"] == "candidate better"
    assert count["alignment"]["decisive"]["count"] == 10 and count["alignment"]["decisive"]["ci95"]["low"] > 0.5
    assert count["fidelity"]["verdict"] == "baseline better"
    # one won, one lost: the interval straddles one half
    assert color["alignment"]["verdict"] == "no detectable difference"
    assert color["fidelity"]["verdict"] == "no detectable difference"  # all ties: nothing decisive
    assert color["fidelity"]["decisive"]["ci95"] is None
    # the paper's figure: at least 7 of 9 agree on the count pairs, never on the 5-4 colour pairs
    assert count["alignment"]["agreed"]["share"] == 1.0 and color["alignment"]["agreed"]["share"] == 0.0
    assert total["alignment"]["agreed"]["count"] == 10 and total["alignment"]["queries"] == 12
    assert total["alignment"]["verdict"] == "candidate better"  # 11 of 12 decisive won


def test_verdict_beside_agreement_on_the_page(client, admin, db, make_user):
    ev = _seed_nine(db, make_user)
    page = client.get(f"/admin/evaluations/{ev.id}").text
    assert "<th scope=\"col\">Verdict</th>" in page

    def row(group, question):
        return page.split(f'data-group="{group}" data-question="{question}"')[1].split("</tr>")[0]

    assert figure(row("count", "alignment"), "verdict") == "candidate better"
    assert figure(row("count", "fidelity"), "verdict") == "baseline better"
    assert figure(row("color", "alignment"), "verdict") == "no detectable difference"
    assert figure(row("count", "alignment"), "agreed").startswith("100%")
    assert figure(row("color", "alignment"), "agreed").startswith("0%")
    # the verdict cell sits right before the agreement figure
    r = row("all", "alignment")
    assert r.index('data-figure="verdict"') < r.index('data-figure="agreed"')
    assert "wholly above one half" in page


def test_page_says_when_an_evaluation_used_fewer_than_nine_raters(client, admin, db, make_user):
    three, _, _ = _seed(db, make_user)  # 3 votes per pair, as the demo without simulated raters
    page = client.get(f"/admin/evaluations/{three.id}").text
    notice = " ".join(page.split("data-raters-notice>")[1].split("</p>")[0].split())
    assert "asks 3 raters" in notice and "not the paper's 9" in notice and "≥ 3 of 3" in notice
    assert "3 raters per pair, not 9" in block(client.get("/admin/evaluations").text, "data-evaluation-id",
                                               str(three.id))
    nine = _seed_nine(db, make_user)
    page = client.get(f"/admin/evaluations/{nine.id}").text
    assert "data-raters-notice" not in page
