"""Every ORM model, imported in one place: one metadata for Alembic, no import cycles."""

from app.db.models.comparison import (
    Comparison,
    ComparisonAssignment,
    ComparisonImage,
    ComparisonVote,
    Evaluation,
)
from app.db.models.image import Image, Rating, RatingAssignment
from app.db.models.job import Job, JobLog
from app.db.models.model_version import ModelVersion, RewardScore
from app.db.models.prompt import Prompt, PromptSet
from app.db.models.user import ApiToken, LoginLockout, User, UserSession

__all__ = [
    "ApiToken",
    "Comparison",
    "ComparisonAssignment",
    "ComparisonImage",
    "ComparisonVote",
    "Evaluation",
    "Image",
    "Job",
    "JobLog",
    "LoginLockout",
    "ModelVersion",
    "Prompt",
    "PromptSet",
    "Rating",
    "RatingAssignment",
    "RewardScore",
    "User",
    "UserSession",
]
