"""Prompt sets: creation from a list or the paper's templates, settings, and label progress."""

from __future__ import annotations

from sqlalchemy import case, func, insert, select
from sqlalchemy.orm import Session

from app.auth.identity import UserIdentity
from app.config import Settings
from app.db.models import Image, Job, Prompt, PromptSet, Rating
from app.errors import Conflict, NotFound
from app.jobs.schemas import LABEL_ORDER_MEANING
from app.prompts import grammar
from app.prompts.schemas import (
    CategoryProgress,
    LabelOrderRead,
    PromptRead,
    PromptSetCreate,
    PromptSetRead,
    PromptSetUpdate,
)


def create_prompt_set(session: Session, settings: Settings, body: PromptSetCreate, *,
                      creator: UserIdentity | None) -> PromptSetRead:
    if session.scalar(select(PromptSet.id).where(PromptSet.name == body.name)) is not None:
        raise Conflict(f"A prompt set named {body.name!r} already exists.", code="name_taken")
    if body.template is not None:
        t = body.template
        rows = grammar.from_template(t.size, t.seed, list(t.categories), list(t.splits or ["seen"]), t.vocabulary)
        source = {"template": t.model_dump()}
    else:
        assert body.prompts is not None
        seen: set[str] = set()
        rows = []
        for text in body.prompts:
            if text in seen:
                continue
            seen.add(text)
            category, split, attrs = grammar.describe(text)
            rows.append({"text": text, "category": category, "split": split, "attributes": attrs})
        source = {"list": {"given": len(body.prompts), "duplicates_dropped": len(body.prompts) - len(rows)}}
    ps = PromptSet(
        name=body.name,
        description=body.description,
        purpose=body.purpose,
        labels_per_image=body.labels_per_image or settings.labels_per_image,
        votes_per_comparison=body.votes_per_comparison or settings.votes_per_comparison,
        gold_rate=body.gold_rate,
        lease_seconds=body.lease_seconds or settings.lease_seconds,
        retrain_threshold=body.retrain_threshold,
        auto_chain=body.auto_chain,
        source=source,
        created_by_id=creator.id if creator else None,
    )
    session.add(ps)
    session.flush()
    if rows:
        session.execute(insert(Prompt), [{**r, "prompt_set_id": ps.id, "position": i} for i, r in enumerate(rows)])
    out = PromptSetRead.model_validate(ps)
    out.prompt_count = len(rows)
    return out


def get_prompt_set_row(session: Session, prompt_set_id: int) -> PromptSet:
    ps = session.get(PromptSet, prompt_set_id)
    if ps is None:
        raise NotFound(f"Prompt set {prompt_set_id} does not exist.")
    return ps


def progress(session: Session, prompt_set_id: int) -> dict[str, CategoryProgress]:
    """Per category: prompts, images, labels wanted vs done (good + bad), and skips."""
    out: dict[str, CategoryProgress] = {}
    for category, n in session.execute(
        select(Prompt.category, func.count()).where(Prompt.prompt_set_id == prompt_set_id).group_by(Prompt.category)
    ):
        out.setdefault(category, CategoryProgress()).prompts = n
    for category, n, wanted in session.execute(
        select(Prompt.category, func.count(Image.id), func.coalesce(func.sum(Image.ratings_wanted), 0))
        .join(Prompt, Prompt.id == Image.prompt_id)
        .where(Image.prompt_set_id == prompt_set_id, Image.gold_label.is_(None))
        .group_by(Prompt.category)
    ):
        p = out.setdefault(category, CategoryProgress())
        p.images, p.labels_wanted = n, int(wanted)
    label_counts = (
        select(
            Prompt.category,
            func.sum(case((Rating.label == "good", 1), else_=0)),
            func.sum(case((Rating.label == "bad", 1), else_=0)),
            func.sum(case((Rating.label == "skip", 1), else_=0)),
        )
        .join(Image, Image.id == Rating.image_id)
        .join(Prompt, Prompt.id == Image.prompt_id)
        .where(Rating.prompt_set_id == prompt_set_id, Image.gold_label.is_(None))
        .group_by(Prompt.category)
    )
    for category, good, bad, skip in session.execute(label_counts):
        p = out.setdefault(category, CategoryProgress())
        p.good, p.bad, p.skip = int(good or 0), int(bad or 0), int(skip or 0)
        p.labels_done = p.good + p.bad
    total = CategoryProgress()
    for p in out.values():
        for field in CategoryProgress.model_fields:
            setattr(total, field, getattr(total, field) + getattr(p, field))
    out["total"] = total
    return out


def label_order(session: Session, prompt_set_id: int) -> LabelOrderRead:
    """The set's labelling order as the last succeeded train_reward job that set one left it (a job with
    "label_order": "keep", the default, leaves it as it was), and how many images carry a rank."""
    images, ranked = session.execute(
        select(func.count(Image.id), func.coalesce(func.sum(case((Image.certainty > 0, 1), else_=0)), 0))
        .where(Image.prompt_set_id == prompt_set_id)
    ).one()
    # one row, found by the index on the set's jobs: most retrains keep the order, so scanning them all
    # (and their results) on every overview would grow with the set's history
    last = session.execute(
        select(Job.id, Job.params["label_order"].as_string(), Job.result["reward_version_id"].as_integer(),
               Job.finished_at)
        .where(Job.prompt_set_id == prompt_set_id, Job.kind == "train_reward", Job.state == "succeeded",
               Job.params["label_order"].as_string().in_(list(LABEL_ORDER_MEANING)))
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(1)
    ).first()
    if last is not None:
        job_id, order, reward_version_id, finished_at = last
        return LabelOrderRead(order=order, meaning=LABEL_ORDER_MEANING[order], ranked_images=int(ranked),
                              images=int(images), job_id=job_id, reward_version_id=reward_version_id,
                              set_at=finished_at)
    return LabelOrderRead(order="arrival", meaning=LABEL_ORDER_MEANING["arrival"], ranked_images=int(ranked),
                          images=int(images))


def read_prompt_set(session: Session, prompt_set_id: int, *, with_progress: bool = True) -> PromptSetRead:
    ps = get_prompt_set_row(session, prompt_set_id)
    out = PromptSetRead.model_validate(ps)
    out.prompt_count = session.scalar(select(func.count()).where(Prompt.prompt_set_id == ps.id)) or 0
    if with_progress:
        out.progress = progress(session, ps.id)
        out.label_order = label_order(session, ps.id)
    return out


def list_prompt_sets(session: Session) -> list[PromptSetRead]:
    counts = dict(session.execute(select(Prompt.prompt_set_id, func.count()).group_by(Prompt.prompt_set_id)).all())
    out = []
    for ps in session.scalars(select(PromptSet).order_by(PromptSet.id)):
        item = PromptSetRead.model_validate(ps)
        item.prompt_count = counts.get(ps.id, 0)
        out.append(item)
    return out


def update_prompt_set(session: Session, prompt_set_id: int, body: PromptSetUpdate) -> PromptSetRead:
    ps = get_prompt_set_row(session, prompt_set_id)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(ps, field, value)
    session.flush()
    return read_prompt_set(session, prompt_set_id, with_progress=False)


def list_prompts(session: Session, prompt_set_id: int, offset: int, limit: int) -> list[PromptRead]:
    get_prompt_set_row(session, prompt_set_id)
    rows = session.scalars(
        select(Prompt).where(Prompt.prompt_set_id == prompt_set_id).order_by(Prompt.position, Prompt.id)
        .offset(offset).limit(limit)
    )
    return [PromptRead.model_validate(r) for r in rows]


def find_or_create_prompt(session: Session, prompt_set_id: int, text: str) -> Prompt:
    text = " ".join(text.split())
    prompt = session.scalar(select(Prompt).where(Prompt.prompt_set_id == prompt_set_id, Prompt.text == text))
    if prompt is None:
        category, split, attrs = grammar.describe(text)
        position = session.scalar(select(func.count()).where(Prompt.prompt_set_id == prompt_set_id)) or 0
        prompt = Prompt(prompt_set_id=prompt_set_id, text=text, category=category, split=split,
                        attributes=attrs, position=position)
        session.add(prompt)
        session.flush()
    return prompt
