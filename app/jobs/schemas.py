"""Job parameters per kind (validated before a job row exists) and job read models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.fields import INT32_MAX, MAX_BASE_SEED, Id, Int64, JsonDoc, OptionalText


class SamplerParams(BaseModel):
    steps: int = Field(30, ge=1, le=500)
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    scheduler: OptionalText = Field(None, max_length=40, description="e.g. ddim, pndm, euler; None: the model's")
    width: int | None = Field(None, ge=16, le=2048, multiple_of=8)
    height: int | None = Field(None, ge=16, le=2048, multiple_of=8)
    batch_size: int = Field(8, ge=1, le=256)


class GenerateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_set_id: Id
    images_per_prompt: int = Field(ge=1, le=1000)
    generator_version_id: Id | None = Field(None, description="default: the base generator")
    base_seed: int = Field(0, ge=0, le=MAX_BASE_SEED,
                           description="seeds are base_seed .. base_seed + images_per_prompt - 1")
    sampler: SamplerParams = Field(default_factory=SamplerParams)
    prompt_ids: list[Id] | None = Field(None, max_length=100_000, description="only these prompts of the set")


class NextRoundParams(BaseModel):
    """`auto_chain.next_round` of a training prompt set: after each chained fine-tune, the new generator
    draws the set's prompts again for annotators to label, and the next retrain fine-tunes that
    generator (round k+1 on images from generator k), until `rounds` fine-tunes are done."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(ge=2, le=100, description="fine-tunes in all, the first included")
    images_per_prompt: int = Field(ge=1, le=1000, description="new images per prompt each round")
    base_seed: int = Field(0, ge=0, le=MAX_BASE_SEED, description="seeds of each round's images (as generate's)")
    sampler: SamplerParams = Field(default_factory=SamplerParams)


class RewardParams(BaseModel):
    lambda_pc: float = Field(0.5, ge=0.0, le=100.0)
    temperature: float = Field(2.0, gt=0.0, le=100.0)
    n_prompts: int = Field(10, ge=2, le=100)
    max_epochs: int = Field(5, ge=1, le=1000, description="passes over the labels, unless min_steps needs more")
    min_steps: int = Field(1500, ge=0, le=1_000_000,
                           description="optimizer steps at least: small label sets get more epochs")
    patience: int = Field(20, ge=1, le=100, description="validations without improvement before stopping")
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0, description="share of the seen prompts held out for validation")
    hold_out_unseen: bool = Field(
        True, description="validate on every unseen-object prompt and never train on one (the paper's unseen accuracy)")
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    vocabulary: Literal["paper", "world"] | None = Field(
        None, description="words of the perturbed prompts; default: the prompt set's template vocabulary")
    rater_weighting: bool = Field(
        False,
        description="weigh each label by its rater's reliability, estimated from every overlapping label and "
        "gold (Dawid-Skene): each image is trained once, on the posterior probability that it is good, "
        "instead of once per label with every rater trusted alike. Needs several labels per image "
        "(labels_per_image >= 2) or gold images to tell raters apart")
    pairs: bool = Field(
        False,
        description="also learn from the prompt set's comparison votes on the alignment question: each compared "
        "pair of images of one prompt adds a Bradley-Terry term on the share of votes for each side (a tie counts "
        "half), weighted by its votes. Fails when the set has no votes")
    lambda_pair: float = Field(1.0, ge=0.0, le=100.0, description="weight of the Bradley-Terry term (with pairs)")
    seed: Int64 = 0


class TrainRewardParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_set_id: Id
    reward: RewardParams = Field(default_factory=RewardParams)
    min_labels: int = Field(10, ge=1, le=INT32_MAX, description="fail clearly below this many usable labels")
    label_order: Literal["keep", "uncertain", "arrival"] = Field(
        "keep",
        description="the order the set's images are handed out for labelling from now on, among equally "
                    "full ones: 'uncertain' ranks them by the new reward model, least sure first (score "
                    "nearest 1/2; images drawn later, unranked, count as least sure); 'arrival' goes back to "
                    "oldest first; 'keep' leaves the order as it is")


# What each labelling order means, in the words the job log and the admin pages use.
LABEL_ORDER_MEANING = {"uncertain": "least certain first, by a reward model's scores (score nearest 1/2)",
                       "arrival": "oldest first"}


class FinetuneParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_set_id: Id = Field(description="its generated images (labelled and unlabelled) are D_model")
    generator_version_id: Id | None = Field(None, description="default: the base generator")
    reward_version_id: Id | None = Field(
        None, description="default: the newest reward model of the set (not used by objective 'dpo')")
    objective: Literal["reward_weighted", "dpo"] = Field(
        "reward_weighted",
        description="'reward_weighted': the paper's loss on the set's generated images weighted by the reward "
                    "model; 'dpo': Diffusion-DPO (Wallace et al. 2023) on the set's compared pairs, preferred = the "
                    "side most alignment votes chose (ties left out), against the starting model as reference")
    dpo_beta: float = Field(5000.0, gt=0.0, le=1e7, description="β of Diffusion-DPO (5000: the paper's SD1.5 value)")
    preset: Literal["world", "paper"] | None = Field(
        None, description="start from a named set of settings (fields given here still win): 'world' is what "
                          "moves the shapes-world models in one round; 'paper' the paper's full fine-tune "
                          "(10,000 steps of 256 + 256 samples, lr 2e-5)")
    mode: Literal["lora", "full"] = "lora"
    lora_rank: int = Field(8, ge=1, le=256)
    lr: float | None = Field(None, gt=0.0, le=1.0)
    beta: float = Field(1.0, ge=0.0, le=100.0)
    max_steps: int = Field(1000, ge=1, le=1_000_000)
    batch_size: int = Field(4, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    caption_dropout: float = Field(0.0, ge=0.0, le=1.0,
                                   description="share of generated samples trained with the empty prompt")
    snr_gamma: float | None = Field(None, gt=0.0, le=1000.0,
                                    description="min-SNR-γ timestep weighting of the loss (e.g. 5); null: none")
    pretrain_dir: OptionalText = Field(None, max_length=1000,
                                     description="folder of image + caption pairs (default: the configured one)")
    seed: Int64 = 0
    checkpoint_every: int | None = Field(
        None, ge=1, le=1_000_000,
        description="steps between checkpoints (and one at the end); a worker that dies resumes from the newest; "
                    "null: a quarter of max_steps, at most 500")
    keep_checkpoints: int = Field(
        2, ge=1, le=100,
        description="checkpoints kept on disk, newest first; only the newest keeps the resume state (a full "
                    "SD1.5 fine-tune's is ~10 GB)")
    ema_decay: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="keep an exponential moving average of the trained weights with this decay (e.g. 0.99) and "
                    "save it instead of the last weights; null: off")
    use_8bit_adam: bool = Field(
        False, description="AdamW with 8-bit states (bitsandbytes on the worker, CUDA): the optimizer's memory "
                           "falls from 8 to 2 bytes per trained weight; a worker without bitsandbytes fails the "
                           "job before it loads anything")
    data_workers: int = Field(
        0, ge=0, le=32,
        description="threads that read and decode a batch's new images in parallel (same order, same result); "
                    "0: in the training loop's thread")


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_set_id: Id = Field(description="the evaluation prompts (seen and unseen)")
    baseline_version_id: Id | None = Field(None, description="default: the base generator")
    candidate_version_id: Id
    images_per_prompt: int = Field(4, ge=1, le=64, description="per side, with shared seeds")
    images_per_side: int = Field(
        4, ge=1, le=16,
        description="images of each model shown together in one query (the paper's 4 against 4); a prompt's "
                    "seeds are split into queries of this many (the last one smaller when they do not divide)")
    base_seed: int = Field(1000, ge=0, le=MAX_BASE_SEED)
    votes_per_comparison: int | None = Field(None, ge=1, le=100, description="default: the prompt set's (9)")
    best_of_n: int | None = Field(None, ge=2, le=256,
                                  description="add a third arm: each baseline image against the best of n "
                                              "samples of the baseline by reward (n per image shown)")
    reward_version_id: Id | None = Field(None, description="for best_of_n; default: newest of the set")
    sampler: SamplerParams = Field(default_factory=SamplerParams)

    @model_validator(mode="after")
    def _distinct(self) -> EvaluateParams:
        if self.baseline_version_id is not None and self.baseline_version_id == self.candidate_version_id:
            raise ValueError("baseline_version_id and candidate_version_id must differ")
        return self


PARAMS_BY_KIND: dict[str, type[BaseModel]] = {
    "generate": GenerateParams,
    "train_reward": TrainRewardParams,
    "finetune": FinetuneParams,
    "evaluate": EvaluateParams,
}


class JobCreate(BaseModel):
    kind: Literal["generate", "train_reward", "finetune", "evaluate"]
    params: JsonDoc = Field(default_factory=dict)


class JobCreated(BaseModel):
    id: int
    kind: str
    state: str


class JobLogLine(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    level: str
    message: str


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    state: str
    params: dict[str, Any]
    prompt_set_id: int | None
    progress: float
    progress_message: str
    result: dict[str, Any]
    error: str | None
    trigger: dict[str, Any]
    parent_job_id: int | None
    created_by_id: int | None
    queue: str
    attempts: int
    max_attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    log_tail: list[JobLogLine] = Field(default_factory=list)
