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
