"""Enumerations stored as short strings and protected by CHECK constraints (see base.one_of)."""

from enum import StrEnum


class Role(StrEnum):
    annotator = "annotator"
    researcher = "researcher"
    admin = "admin"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self]


ROLE_RANK = {Role.annotator: 0, Role.researcher: 1, Role.admin: 2}


class PromptCategory(StrEnum):
    # the member shadows str.count; its value is stored under a CHECK constraint, so it keeps the name
    count = "count"  # type: ignore[assignment]
    color = "color"
    background = "background"
    combination = "combination"
    other = "other"  # an uploaded prompt that the template grammar does not parse


class PromptSplit(StrEnum):
    seen = "seen"
    unseen = "unseen"


class PromptSetPurpose(StrEnum):
    training = "training"
    evaluation = "evaluation"


class ModelKind(StrEnum):
    generator = "generator"
    reward = "reward"


class ImageSource(StrEnum):
    generated = "generated"
    uploaded = "uploaded"


class RatingLabel(StrEnum):
    good = "good"
    bad = "bad"
    skip = "skip"


class GoldLabel(StrEnum):
    good = "good"
    bad = "bad"


class AssignmentState(StrEnum):
    leased = "leased"
    submitted = "submitted"
    released = "released"  # given back (undo of a lease, lease expired and reclaimed)


class Side(StrEnum):
    """A comparison answer in model terms: image a, image b or a tie (the page shows left/right)."""

    a = "a"
    b = "b"
    tie = "tie"


class JobKind(StrEnum):
    generate = "generate"
    train_reward = "train_reward"
    finetune = "finetune"
    evaluate = "evaluate"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_JOB_STATES = (JobState.queued.value, JobState.running.value)


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(e.value for e in enum)
