from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.fields import INT32_MAX, Int64, JsonDoc, OptionalText, Text
from app.jobs.schemas import NextRoundParams

AUTO_CHAIN_STEPS = ("train_reward", "finetune", "evaluate", "next_round")


def check_auto_chain(chain: dict[str, Any] | None) -> dict[str, Any] | None:
    """Steps of an automatic round: known names, each an object of job parameters. Each job's own
    parameters are checked when the job is made (they need the set and its models); `next_round`,
    which no job checks before it runs, is checked here."""
    if chain is None:
        return chain
    unknown = sorted(set(chain) - set(AUTO_CHAIN_STEPS))
    if unknown:
        raise ValueError(f"unknown step {unknown[0]!r}; the steps are {', '.join(AUTO_CHAIN_STEPS)}")
    for step, params in chain.items():
        if not isinstance(params, dict):
            raise ValueError(f"{step} must be an object of job parameters")
    if "next_round" in chain:
        try:
            NextRoundParams.model_validate(chain["next_round"])
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in ("next_round", *first["loc"]))
            raise ValueError(f"{where}: {first['msg']}") from None
    return chain


class Highlight(BaseModel):
    """A span of a prompt's text that names a count, colour, object or background."""

    start: int
    end: int
    kind: str = Field(description="count | color | object | background")

Category = Literal["count", "color", "background", "combination"]
Split = Literal["seen", "unseen"]


def _all_categories() -> list[Category]:
    return ["count", "color", "background", "combination"]


def _all_splits() -> list[Split]:
    return ["seen", "unseen"]


class TemplateSpec(BaseModel):
    size: int | None = Field(2774, ge=1, le=100_000, description="number of prompts (None: every template prompt)")
    seed: Int64 = Field(0, description="seed of the deterministic sampling")
    categories: list[Category] = Field(default_factory=_all_categories, min_length=1)
    splits: list[Split] | None = Field(
        None, min_length=1,
        description="default: 'seen' only for a training set (the unseen objects are held out, as in the paper), "
                    "'seen' and 'unseen' in equal shares for an evaluation set")
    vocabulary: Literal["paper", "world"] = Field(
        "paper", description="the paper's words, or the shapes world's (for the world models and their oracle)")


class PromptSetCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    description: Text = Field("", max_length=5000)
    purpose: Literal["training", "evaluation"] = "training"
    prompts: list[Text] | None = Field(None, min_length=1, max_length=100_000,
                                       description="prompt texts; or give `template`")
    template: TemplateSpec | None = Field(None, description="build the prompts from the paper's templates")
    labels_per_image: int | None = Field(None, ge=1, le=100, description="K labels wanted per image")
    votes_per_comparison: int | None = Field(None, ge=1, le=100, description="N votes wanted per comparison")
    gold_rate: float = Field(0.0, ge=0.0, le=0.5, description="share of each annotator's stream that is gold")
    lease_seconds: int | None = Field(None, ge=10, le=86_400)
    retrain_threshold: int | None = Field(None, ge=1, le=INT32_MAX,
                                          description="new usable labels that start a reward training")
    auto_chain: JsonDoc = Field(default_factory=dict, description="what follows an automatic retrain")

    _check_chain = field_validator("auto_chain")(check_auto_chain)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be blank")
        return v

    @field_validator("prompts")
    @classmethod
    def _clean_prompts(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        cleaned = []
        for i, text in enumerate(v):
            text = " ".join(text.split())
            if not text:
                raise ValueError(f"prompt {i} is blank")
            if len(text) > 1000:
                raise ValueError(f"prompt {i} is longer than 1000 characters")
            cleaned.append(text)
        return cleaned

    @model_validator(mode="after")
    def _one_source(self) -> PromptSetCreate:
        if (self.prompts is None) == (self.template is None):
            raise ValueError("give either `prompts` (a list of texts) or `template`, not both or neither")
        if self.template is not None and self.template.splits is None:
            self.template.splits = _all_splits() if self.purpose == "evaluation" else ["seen"]
        return self


class PromptSetUpdate(BaseModel):
    """Changes the fields given and keeps the others. `retrain_threshold: null` switches automatic
    retraining off; every other field has a value, so null there is refused (leave it out instead)."""

    # None: not given (only retrain_threshold may be set to null, see _not_null)
    description: OptionalText = Field(None, max_length=5000)
    labels_per_image: int | None = Field(None, ge=1, le=100)
    gold_rate: float | None = Field(None, ge=0.0, le=0.5)
    lease_seconds: int | None = Field(None, ge=10, le=86_400)
    retrain_threshold: int | None = Field(None, ge=1, le=INT32_MAX, description="null: no automatic retraining")
    auto_chain: JsonDoc | None = None

    _check_chain = field_validator("auto_chain")(check_auto_chain)

    @field_validator("description", "labels_per_image", "gold_rate", "lease_seconds", "auto_chain", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep its current value")
        return value


class CategoryProgress(BaseModel):
    prompts: int = 0
    images: int = 0
    labels_wanted: int = 0
    labels_done: int = 0
    good: int = 0
    bad: int = 0
    skip: int = 0


class LabelOrderRead(BaseModel):
    order: Literal["uncertain", "arrival"] = Field(
        description="how the set's images are handed out for labelling among equally full ones")
    meaning: str
    ranked_images: int = Field(description="images that carry a rank from a reward model (unranked ones, "
                                            "drawn after it, count as least sure)")
    images: int
    job_id: int | None = Field(None, description="the train_reward job that set this order; None: never set")
    reward_version_id: int | None = Field(None, description="the reward model whose scores rank the images")
    set_at: datetime | None = None


class PromptSetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    purpose: str
    labels_per_image: int
    votes_per_comparison: int
    gold_rate: float
    lease_seconds: int
    retrain_threshold: int | None
    auto_chain: dict[str, Any]
    source: dict[str, Any]
    created_at: datetime
    prompt_count: int = 0
    progress: dict[str, CategoryProgress] | None = Field(
        None, description="labels done / wanted per category, plus 'total' (on GET of one set)"
    )
    label_order: LabelOrderRead | None = Field(
        None, description="the order its images are handed out for labelling (on GET of one set)"
    )


class PromptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    category: str
    split: str
    attributes: dict[str, Any]
