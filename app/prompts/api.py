"""REST: prompt sets (researchers create and change them; annotators may read progress)."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from pydantic import ValidationError

from app.deps import ResearcherDep, SessionDep, SettingsDep
from app.errors import Invalid
from app.fields import INT32_MAX
from app.prompts import service
from app.prompts.schemas import PromptRead, PromptSetCreate, PromptSetRead, PromptSetUpdate

router = APIRouter(prefix="/api/v1/prompt-sets", tags=["prompt sets"])


@router.post("", response_model=PromptSetRead, status_code=status.HTTP_201_CREATED)
def create_prompt_set(body: PromptSetCreate, principal: ResearcherDep, session: SessionDep,
                      settings: SettingsDep) -> PromptSetRead:
    return service.create_prompt_set(session, settings, body, creator=principal.user)


@router.get("", response_model=list[PromptSetRead])
def list_prompt_sets(principal: ResearcherDep, session: SessionDep) -> list[PromptSetRead]:
    return service.list_prompt_sets(session)


@router.get("/{prompt_set_id}", response_model=PromptSetRead)
def get_prompt_set(prompt_set_id: int, principal: ResearcherDep, session: SessionDep) -> PromptSetRead:
    return service.read_prompt_set(session, prompt_set_id)


@router.patch("/{prompt_set_id}", response_model=PromptSetRead)
def update_prompt_set(prompt_set_id: int, body: PromptSetUpdate, principal: ResearcherDep,
                      session: SessionDep) -> PromptSetRead:
    return service.update_prompt_set(session, prompt_set_id, body)


@router.get("/{prompt_set_id}/prompts", response_model=list[PromptRead])
def list_prompts(
    prompt_set_id: int,
    principal: ResearcherDep,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[PromptRead]:
    return service.list_prompts(session, prompt_set_id, offset, limit)


@router.post("/upload", response_model=PromptSetRead, status_code=status.HTTP_201_CREATED)
def upload_prompt_set(
    principal: ResearcherDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="JSONL ({\"text\": ...} per line) or CSV with a text column")],
    name: Annotated[str, Form(max_length=200)],
    description: Annotated[str, Form(max_length=5000)] = "",
    purpose: Annotated[Literal["training", "evaluation"], Form()] = "training",
    labels_per_image: Annotated[int | None, Form(ge=1, le=100)] = None,
    votes_per_comparison: Annotated[int | None, Form(ge=1, le=100)] = None,
    gold_rate: Annotated[float, Form(ge=0.0, le=0.5)] = 0.0,
    retrain_threshold: Annotated[int | None, Form(ge=1, le=INT32_MAX)] = None,
) -> PromptSetRead:
    texts = parse_prompt_file(file.filename or "", file.file.read(20 * 1024 * 1024 + 1))
    try:
        body = PromptSetCreate(name=name, description=description, purpose=purpose, prompts=texts,
                               labels_per_image=labels_per_image, votes_per_comparison=votes_per_comparison,
                               gold_rate=gold_rate, retrain_threshold=retrain_threshold)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg'].removeprefix('Value error, ')}"
                            for e in exc.errors()[:3])
        raise Invalid(message) from exc
    created = service.create_prompt_set(session, settings, body, creator=principal.user)
    created.source = {"upload": {"filename": (file.filename or "")[:200], **created.source.get("list", {})}}
    service.get_prompt_set_row(session, created.id).source = created.source
    return created


def parse_prompt_file(filename: str, data: bytes) -> list[str]:
    """Prompt texts from JSONL (objects with `text` or `prompt`, or bare strings) or CSV (a
    `text` or `prompt` column, else the first column). Errors name the line."""
    if len(data) > 20 * 1024 * 1024:
        raise Invalid("file: larger than 20 MB")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid("file: not UTF-8 text") from exc
    texts: list[str] = []
    if filename.lower().endswith(".csv"):
        reader = csv.reader(io.StringIO(content))
        try:
            rows = list(reader)
        except csv.Error as exc:  # e.g. a field past the csv module's limit (131072 characters)
            limit = csv.field_size_limit()
            reason = (f"has a field longer than {limit} characters, the most a CSV field may hold "
                      "(a prompt is at most 1000)") if "field limit" in str(exc) else f"is not valid CSV ({exc})"
            raise Invalid(f"file: line {reader.line_num} {reason}") from exc
        if not rows:
            raise Invalid("file: the CSV is empty")
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(k) for k in ("text", "prompt") if k in header), None)
        body = rows[1:] if col is not None else rows
        col = col or 0
        texts += [row[col] for row in body if len(row) > col and row[col].strip()]
    else:
        for i, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise Invalid(f"file: line {i} is not valid JSON ({exc.msg})") from exc
            except RecursionError as exc:
                raise Invalid(f"file: line {i} is JSON nested too deeply to be read") from exc
            text = item if isinstance(item, str) else item.get("text") or item.get("prompt") \
                if isinstance(item, dict) else None
            if not isinstance(text, str):
                raise Invalid(f"file: line {i} has no \"text\" string")
            texts.append(text)
    if not texts:
        raise Invalid("file: no prompts found")
    return texts
