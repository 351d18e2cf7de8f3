"""Exports of ratings and votes, streamed row by row as JSONL or Parquet (one row per label or vote).

Both take the same optional filters (`ExportFilter`: a prompt set; votes also an evaluation) and
describe the prompt the same way (text, category, split, attributes as an object: a JSON object in
JSONL, a struct in Parquet), so that `datasets.load_dataset("parquet", ...)` and pandas read them
without a second parse.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased, sessionmaker

from app.db.models import Comparison, ComparisonAssignment, ComparisonVote, Image, Prompt, Rating, User
from app.images.service import image_url

CHUNK = 2000

# what the prompt grammar parses out of a probe prompt (app/prompts/grammar.py); null where it says nothing
ATTRIBUTES = pa.struct([("object", pa.string()), ("count", pa.int64()), ("color", pa.string()),
                        ("background", pa.string())])
RATING_SCHEMA = pa.schema([
    ("rating_id", pa.int64()), ("image_id", pa.int64()), ("image_url", pa.string()), ("prompt", pa.string()),
    ("category", pa.string()), ("split", pa.string()), ("attributes", ATTRIBUTES), ("label", pa.string()),
    ("skip_reason", pa.string()), ("annotator", pa.string()), ("duration_ms", pa.int64()),
    ("created_at", pa.timestamp("us", tz="UTC")), ("generator_version_id", pa.int64()), ("seed", pa.int64()),
    ("gold_item", pa.bool_()), ("prompt_set_id", pa.int64()),
])
VOTE_SCHEMA = pa.schema([
    ("vote_id", pa.int64()), ("comparison_id", pa.int64()), ("evaluation_id", pa.int64()), ("prompt", pa.string()),
    ("category", pa.string()), ("split", pa.string()), ("attributes", ATTRIBUTES), ("prompt_set_id", pa.int64()),
    ("image_a_id", pa.int64()), ("image_b_id", pa.int64()),
    ("image_a_url", pa.string()), ("image_b_url", pa.string()), ("generator_a_id", pa.int64()),
    ("generator_b_id", pa.int64()), ("left_image_id", pa.int64()), ("alignment", pa.string()),
    ("fidelity", pa.string()), ("annotator", pa.string()), ("duration_ms", pa.int64()),
    ("created_at", pa.timestamp("us", tz="UTC")),
])
PICKAPIC_SCHEMA = pa.schema([
    ("ranking_id", pa.int64()), ("caption", pa.string()), ("image_0_uid", pa.int64()), ("image_1_uid", pa.int64()),
    ("image_0_url", pa.string()), ("image_1_url", pa.string()), ("label_0", pa.float64()), ("label_1", pa.float64()),
    ("fidelity_label_0", pa.float64()), ("fidelity_label_1", pa.float64()), ("best_image_uid", pa.int64()),
    ("user_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class ExportFilter:
    """Which rows an export holds; None: no restriction (everything)."""

    prompt_set_id: int | None = None
    evaluation_id: int | None = None  # votes only

    def name(self, what: str) -> str:
        parts = [what]
        if self.prompt_set_id is not None:
            parts.append(f"prompt-set-{self.prompt_set_id}")
        if self.evaluation_id is not None:
            parts.append(f"evaluation-{self.evaluation_id}")
        return "-".join(parts) if len(parts) > 1 else f"{what}-all"


def attributes(value: Any) -> dict[str, Any]:
    """A prompt's stored attributes as the export's object: the grammar's four fields, None where absent."""
    value = value if isinstance(value, dict) else {}
    return {name: value.get(name) for name in ATTRIBUTES.names}


def _rating_rows(session: Session, where: ExportFilter) -> Iterator[dict[str, Any]]:
    query = (
        select(Rating.id, Rating.image_id, Prompt.text, Prompt.category, Prompt.split, Prompt.attributes,
               Rating.label, Rating.skip_reason, User.pseudonym, Rating.duration_ms, Rating.created_at,
               Image.generator_version_id, Image.seed, Image.gold_label, Rating.prompt_set_id)
        .join(Image, Image.id == Rating.image_id).join(Prompt, Prompt.id == Image.prompt_id)
        .join(User, User.id == Rating.annotator_id)
        .order_by(Rating.id).execution_options(yield_per=CHUNK)
    )
    if where.prompt_set_id is not None:
        query = query.where(Rating.prompt_set_id == where.prompt_set_id)
    for r in session.execute(query):
        yield {"rating_id": r[0], "image_id": r[1], "image_url": image_url(r[1]), "prompt": r[2], "category": r[3],
               "split": r[4], "attributes": attributes(r[5]), "label": r[6], "skip_reason": r[7],
               "annotator": r[8], "duration_ms": r[9], "created_at": r[10], "generator_version_id": r[11],
               "seed": r[12], "gold_item": r[13] is not None, "prompt_set_id": r[14]}


def _vote_rows(session: Session, where: ExportFilter) -> Iterator[dict[str, Any]]:
    img_a, img_b = aliased(Image), aliased(Image)
    query = (
        select(ComparisonVote.id, Comparison.id, Comparison.evaluation_id, Prompt.text, Prompt.category, Prompt.split,
               Prompt.attributes, Prompt.prompt_set_id, Comparison.image_a_id, Comparison.image_b_id,
               img_a.generator_version_id, img_b.generator_version_id,
               ComparisonAssignment.left_is_a, ComparisonVote.alignment, ComparisonVote.fidelity, User.pseudonym,
               ComparisonVote.duration_ms, ComparisonVote.created_at)
        .join(Comparison, Comparison.id == ComparisonVote.comparison_id)
        .join(ComparisonAssignment, ComparisonAssignment.id == ComparisonVote.assignment_id)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .join(img_a, img_a.id == Comparison.image_a_id).join(img_b, img_b.id == Comparison.image_b_id)
        .join(User, User.id == ComparisonVote.annotator_id)
        .order_by(ComparisonVote.id).execution_options(yield_per=CHUNK)
    )
    if where.evaluation_id is not None:
        query = query.where(Comparison.evaluation_id == where.evaluation_id)
    if where.prompt_set_id is not None:
        query = query.where(Prompt.prompt_set_id == where.prompt_set_id)
    for r in session.execute(query):
        (vote_id, comparison_id, evaluation_id, text, category, split, attrs, prompt_set_id, a_id, b_id,
         gen_a, gen_b, left_is_a, alignment, fidelity, annotator, duration_ms, created_at) = r
        yield {"vote_id": vote_id, "comparison_id": comparison_id, "evaluation_id": evaluation_id, "prompt": text,
               "category": category, "split": split, "attributes": attributes(attrs), "prompt_set_id": prompt_set_id,
               "image_a_id": a_id, "image_b_id": b_id, "image_a_url": image_url(a_id), "image_b_url": image_url(b_id),
               "generator_a_id": gen_a, "generator_b_id": gen_b, "left_image_id": a_id if left_is_a else b_id,
               "alignment": alignment, "fidelity": fidelity, "annotator": annotator, "duration_ms": duration_ms,
               "created_at": created_at}


def _pickapic(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pick-a-Pic's pair layout: image_0 = a (baseline), image_1 = b; labels 1 / 0 / 0.5 for a tie."""
    weights = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5)}
    for r in rows:
        l0, l1 = weights[r["alignment"]]
        f0, f1 = weights[r["fidelity"]]
        best = r["image_a_id"] if l0 > l1 else r["image_b_id"] if l1 > l0 else None
        yield {"ranking_id": r["vote_id"], "caption": r["prompt"], "image_0_uid": r["image_a_id"],
               "image_1_uid": r["image_b_id"], "image_0_url": r["image_a_url"], "image_1_url": r["image_b_url"],
               "label_0": l0, "label_1": l1, "fidelity_label_0": f0, "fidelity_label_1": f1,
               "best_image_uid": best, "user_id": r["annotator"], "created_at": r["created_at"]}


def _jsonl(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    def default(o: Any) -> Any:
        return o.isoformat() if isinstance(o, datetime) else str(o)

    buf: list[str] = []
    for row in rows:
        buf.append(json.dumps(row, default=default, ensure_ascii=False))
        if len(buf) >= 500:
            yield ("\n".join(buf) + "\n").encode()
            buf = []
    if buf:
        yield ("\n".join(buf) + "\n").encode()


class _Drain(io.RawIOBase):
    """A write-only sink that hands written bytes to the response as they come."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.chunks.append(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


def _parquet(rows: Iterator[dict[str, Any]], schema: pa.Schema) -> Iterator[bytes]:
    sink = _Drain()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema)
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch = []
            yield sink.take()
    if batch:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    writer.close()
    yield sink.take()


def stream(factory: sessionmaker[Session], what: str, fmt: str, where: ExportFilter) -> Iterator[bytes]:
    """The export as byte chunks; it opens its own session because it outlives the request's."""
    with factory() as session:
        if what == "ratings":
            rows, schema = _rating_rows(session, where), RATING_SCHEMA
        elif fmt == "pickapic":
            rows, schema = _pickapic(_vote_rows(session, where)), PICKAPIC_SCHEMA
        else:
            rows, schema = _vote_rows(session, where), VOTE_SCHEMA
        if fmt in ("parquet", "pickapic"):
            yield from _parquet(rows, schema)
        else:
            yield from _jsonl(rows)
