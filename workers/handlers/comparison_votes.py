"""The alignment votes on compared image pairs of a prompt set, as pairs for training: the reward
model's Bradley-Terry term (train_reward, `reward.pairs`) and Diffusion-DPO (finetune, `objective: dpo`).

A comparison shows one image of each side, or several (the paper's 4 against 4, `ComparisonImage`):
votes answer for the sides, so the images at the same position of the two sides (the same seed in
an evaluation) make one pair each, all with the comparison's votes. A tie counts half to each side.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Comparison, ComparisonImage, ComparisonVote, Image, Prompt


@dataclass(frozen=True)
class VotedImage:
    image_id: int
    content_hash: str
    storage_key: str


@dataclass(frozen=True)
class VotedPair:
    a: VotedImage
    b: VotedImage
    prompt: str
    votes_a: int
    votes_b: int
    ties: int

    @property
    def votes(self) -> int:
        return self.votes_a + self.votes_b + self.ties

    @property
    def share_a(self) -> float:
        return (self.votes_a + 0.5 * self.ties) / self.votes


def max_vote_id(s: Session, prompt_set_id: int) -> int:
    """The newest vote on a comparison of the set's prompts (the snapshot a job trains on)."""
    return s.scalar(
        select(func.max(ComparisonVote.id)).join(Comparison, Comparison.id == ComparisonVote.comparison_id)
        .join(Prompt, Prompt.id == Comparison.prompt_id).where(Prompt.prompt_set_id == prompt_set_id)
    ) or 0


def voted_pairs(s: Session, prompt_set_id: int, up_to_vote: int) -> list[VotedPair]:
    """Every compared pair of the set's prompts outside evaluations, with its alignment votes up to vote id
    `up_to_vote`."""
    counts: dict[int, dict[str, int]] = {}
    for cid, alignment in s.execute(
        select(ComparisonVote.comparison_id, ComparisonVote.alignment)
        .join(Comparison, Comparison.id == ComparisonVote.comparison_id)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        # an evaluation's pairs measure a model; they never train one (the rule that keeps evaluation
        # images out of D_model): training pairs are made with POST /comparisons without an evaluation
        .where(Prompt.prompt_set_id == prompt_set_id, ComparisonVote.id <= up_to_vote,
               Comparison.evaluation_id.is_(None))
    ):
        c = counts.setdefault(cid, {"a": 0, "b": 0, "tie": 0})
        c[alignment] = c.get(alignment, 0) + 1
    if not counts:
        return []
    comps = s.execute(
        select(Comparison.id, Comparison.image_a_id, Comparison.image_b_id, Prompt.text)
        .join(Prompt, Prompt.id == Comparison.prompt_id).where(Comparison.id.in_(counts)).order_by(Comparison.id)
    ).all()
    sides: dict[int, dict[str, list[tuple[int, int]]]] = {}
    for cid, side, position, image_id in s.execute(
        select(ComparisonImage.comparison_id, ComparisonImage.side, ComparisonImage.position,
               ComparisonImage.image_id).where(ComparisonImage.comparison_id.in_(counts))
    ):
        sides.setdefault(cid, {"a": [], "b": []})[side].append((position, image_id))
    image_pairs: list[tuple[int, int, int, str]] = []
    for cid, image_a, image_b, text in comps:
        if cid in sides:
            a, b = (sorted(sides[cid][k]) for k in ("a", "b"))
            image_pairs += [(cid, ia, ib, text) for (_, ia), (_, ib) in zip(a, b, strict=False)]
        else:
            image_pairs.append((cid, image_a, image_b, text))
    ids = {i for _, a, b, _ in image_pairs for i in (a, b)}
    images = {r.id: VotedImage(r.id, r.content_hash, r.storage_key) for r in s.execute(
        select(Image.id, Image.content_hash, Image.storage_key).where(Image.id.in_(ids)))}
    return [VotedPair(images[a], images[b], text, counts[cid]["a"], counts[cid]["b"], counts[cid]["tie"])
            for cid, a, b, text in image_pairs if a in images and b in images]
