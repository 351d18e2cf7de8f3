"""What a request may carry, in one place: the bounds of the database's integer columns and the
checks every piece of user-supplied text and free-form JSON goes through before it is stored.

Request schemas (and Form parameters) use these types; a value outside them is refused with a 422
that names the field, never passed on to the database to fail there as a 500. (As a last line,
app/errors.py also turns a value the database refuses, such as an id in a path past BIGINT, into
a 4xx; see `refused_value` there.)
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

INT32_MAX = 2**31 - 1  # INTEGER columns: counts and settings (labels_per_image, retrain_threshold, ...)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # BIGINT columns: every id, seeds
# a job's seeds run upward from its base_seed (generate: + images_per_prompt, evaluate: + 100000 +
# best_of_n) and are stored in image.seed (BIGINT): this bound leaves them room
MAX_BASE_SEED = 2**62
# free-form JSON documents (auto_chain, hyperparameters, metrics, job params): deeper nesting than
# this is no configuration, and past ~250 levels a stored document could no longer be read back
MAX_JSON_DEPTH = 32

NUL_MESSAGE = "must not contain NUL characters (\\u0000)"


def _no_nul(value: Any) -> Any:
    # before the str check, so Field constraints (max_length, ...) keep their own messages
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value


# Postgres cannot store U+0000 in text: for Form parameters, `Annotated[str, Form(...), NoNul]`
# (after the Form, so that its max_length keeps its message)
NoNul = BeforeValidator(_no_nul)
# user-supplied text of a schema: `name: Text = Field(max_length=200)`
Text = Annotated[str, NoNul]
# the same where null is allowed (`Text | None` would turn max_length's message into a generic one)
OptionalText = Annotated[str | None, NoNul]

Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]


def _storable_json(doc: dict[str, Any]) -> dict[str, Any]:
    """A JSON document Postgres (jsonb) can store and we can read back: no NUL in keys or
    strings, no NaN / Infinity (JSON has neither), at most MAX_JSON_DEPTH levels."""
    stack: list[tuple[Any, int, str]] = [(doc, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        at = f" (at {where})" if where else ""
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels{at}")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and "\x00" in key:
                    raise ValueError(f"keys {NUL_MESSAGE}{at}")
                stack.append((value, depth + 1, path))
        elif isinstance(node, str) and "\x00" in node:
            raise ValueError(f"{NUL_MESSAGE}{at}")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"numbers must be finite: JSON has no NaN or Infinity{at}")
    return doc


JsonDoc = Annotated[dict[str, Any], AfterValidator(_storable_json)]
