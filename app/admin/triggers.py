"""A job's trigger (a nested dict: who or what started it) as one sentence, with links to the jobs and
prompt set it names: "Follows train_reward job #3, in a chain started automatically by 512 new labels
(threshold 384)." The pieces are (text, href) pairs so that the page and the polling script both build
links without either of them reading HTML out of data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 6  # retries of retries of chains...: deeper than this the sentence stops following


@dataclass(frozen=True)
class Piece:
    text: str
    href: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {"text": self.text, "href": self.href}


@dataclass(frozen=True)
class Names:
    users: dict[int, str]
    prompt_sets: dict[int, str]


def job_link(job_id: Any, kind: Any = None) -> Piece:
    label = f"{kind} job #{job_id}" if kind else f"job #{job_id}"
    return Piece(label, f"/admin/jobs/{job_id}" if isinstance(job_id, int) else None)


def _user(trigger: dict[str, Any], names: Names) -> str | None:
    uid = trigger.get("user_id")
    if isinstance(uid, int):
        return names.users.get(uid) or str(trigger.get("username") or f"user #{uid}")
    return None


def _origin(trigger: Any, names: Names, prompt_set_id: int | None, depth: int = 0) -> list[Piece]:
    """How a chain or a retried job began, as a clause: "started by alice", "started automatically by ..."."""
    if not isinstance(trigger, dict) or not trigger or depth > MAX_DEPTH:
        return [Piece("started by an unrecorded cause")]
    kind = trigger.get("type")
    if kind == "chain":  # a chain's root is the previous job's trigger: follow it to where the chain began
        return _origin(trigger.get("root"), names, prompt_set_id, depth + 1)
    if kind == "user":
        return [Piece(f"started by {_user(trigger, names) or 'a person'}")]
    if kind == "auto":
        return [Piece("started automatically"), *_auto_reason(trigger, names, prompt_set_id)]
    if kind == "retry":
        who = _user(trigger, names)
        return [Piece("a retry of "), job_link(trigger.get("of_job")), Piece(f" by {who}" if who else "")]
    return [Piece(f"started by {kind}")]


def _auto_reason(trigger: dict[str, Any], names: Names, prompt_set_id: int | None) -> list[Piece]:
    pieces: list[Piece] = []
    if isinstance(trigger.get("new_labels"), int):
        threshold = trigger.get("threshold")
        pieces.append(Piece(f" by {trigger['new_labels']} new labels"
                            + (f" (threshold {threshold})" if isinstance(threshold, int) else "")))
    elif trigger.get("reason"):
        pieces.append(Piece(f" ({trigger['reason']})"))
    if prompt_set_id is not None:
        name = names.prompt_sets.get(prompt_set_id, f"#{prompt_set_id}")
        pieces += [Piece(" in prompt set "), Piece(name, f"/admin#set-{prompt_set_id}")]
    return pieces


def describe(trigger: dict[str, Any] | None, names: Names, prompt_set_id: int | None = None) -> list[Piece]:
    """The whole sentence, capitalised and with its full stop."""
    if not trigger:
        return [Piece("—")]
    kind = trigger.get("type")
    if kind == "chain":
        pieces = [Piece("Follows "), job_link(trigger.get("after_job"), trigger.get("after_kind")),
                  Piece(", in a chain "), *_origin(trigger.get("root"), names, prompt_set_id)]
    elif kind == "retry":
        who = _user(trigger, names)
        pieces = [Piece("Retry of "), job_link(trigger.get("of_job")), Piece(f" by {who}" if who else "")]
        original = trigger.get("original_trigger")
        if isinstance(original, dict) and original:
            pieces += [Piece("; that job was "), *_origin(original, names, prompt_set_id)]
    else:
        clause = _origin(trigger, names, prompt_set_id)
        pieces = [Piece(clause[0].text[:1].upper() + clause[0].text[1:], clause[0].href), *clause[1:]]
    pieces.append(Piece("."))
    return [p for p in pieces if p.text]


def text(pieces: list[Piece]) -> str:
    return "".join(p.text for p in pieces)
