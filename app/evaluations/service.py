"""Evaluation results, computed from the votes whenever they are asked for.

Per query (comparison) and question, the votes split into candidate (b) / baseline (a) / tie.
Majority gives win / tie / loss; the paper's headline is the share of queries where at least
7 of 9 raters agree (scaled to the evaluation's votes per pair: ceil(7/9 * N)).
"""

from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Comparison, ComparisonVote, Evaluation, Prompt
from app.errors import NotFound
from app.evaluations.schemas import (
    EvaluationRead,
    GroupResult,
    Interval,
    OutcomeShare,
    QuestionResult,
    Verdict,
)

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> Interval | None:
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(low=max(0.0, centre - half), high=min(1.0, centre + half))


def share(k: int, n: int) -> OutcomeShare:
    return OutcomeShare(count=k, share=k / n if n else None, ci95=wilson(k, n))


def agreement_threshold(votes_per_comparison: int) -> int:
    return max(1, math.ceil(7 * votes_per_comparison / 9))


def _question(tallies: list[dict[str, int]], threshold: int) -> QuestionResult:
    n = len(tallies)
    win = tie = loss = a_win = a_tie = a_loss = none = 0
    for t in tallies:
        b, a, tt = t.get("b", 0), t.get("a", 0), t.get("tie", 0)
        if b > a and b > tt:
            win += 1
        elif a > b and a > tt:
            loss += 1
        else:
            tie += 1
        if b >= threshold:
            a_win += 1
        elif a >= threshold:
            a_loss += 1
        elif tt >= threshold:
            a_tie += 1
        else:
            none += 1
    decisive = share(win, win + loss)
    return QuestionResult(queries=n, win=share(win, n), tie=share(tie, n), loss=share(loss, n),
                          agreed_win=share(a_win, n), agreed_tie=share(a_tie, n), agreed_loss=share(a_loss, n),
                          no_agreement=share(none, n), agreed=share(a_win + a_tie + a_loss, n),
                          decisive=decisive, verdict=verdict(decisive) if n else None)


def verdict(decisive: OutcomeShare) -> Verdict:
    """Candidate's share of the won + lost queries: is one half outside its 95% interval?

    A sign test in interval form; ties say nothing about which side is better, so they are left out."""
    ci = decisive.ci95
    if ci is not None and ci.low > 0.5:
        return "candidate better"
    if ci is not None and ci.high < 0.5:
        return "baseline better"
    return "no detectable difference"


def comparison_tallies(session: Session, evaluation_id: int) -> dict[int, dict[str, dict[str, int]]]:
    """comparison id -> {"alignment": {a, b, tie}, "fidelity": {...}} vote counts."""
    out: dict[int, dict[str, dict[str, int]]] = defaultdict(lambda: {"alignment": {}, "fidelity": {}})
    for question, column in (("alignment", ComparisonVote.alignment), ("fidelity", ComparisonVote.fidelity)):
        rows = session.execute(
            select(ComparisonVote.comparison_id, column, func.count())
            .join(Comparison, Comparison.id == ComparisonVote.comparison_id)
            .where(Comparison.evaluation_id == evaluation_id)
            .group_by(ComparisonVote.comparison_id, column)
        )
        for cid, answer, n in rows:
            out[cid][question][answer] = n
    return out


def evaluation_results(session: Session, evaluation_id: int) -> EvaluationRead:
    ev = session.get(Evaluation, evaluation_id)
    if ev is None:
        raise NotFound(f"Evaluation {evaluation_id} does not exist.")
    comps = session.execute(
        select(Comparison.id, Comparison.votes_wanted, Comparison.votes_open, Prompt.category, Prompt.split)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .where(Comparison.evaluation_id == ev.id)
    ).all()
    tallies = comparison_tallies(session, ev.id)
    threshold = agreement_threshold(ev.votes_per_comparison)
    groups: dict[str, list[int]] = defaultdict(list)
    complete = 0
    for c in comps:
        votes_in = sum(tallies.get(c.id, {}).get("alignment", {}).values())
        if votes_in < c.votes_wanted:
            continue  # results count complete queries only
        complete += 1
        for g in ("all", c.category, c.split):
            groups[g].append(c.id)
    order = ["all", "count", "color", "background", "combination", "other", "seen", "unseen"]
    results = [
        GroupResult(
            group=g,
            alignment=_question([tallies[i]["alignment"] for i in groups[g]], threshold),
            fidelity=_question([tallies[i]["fidelity"] for i in groups[g]], threshold),
        )
        for g in order if g in groups
    ]
    votes = session.scalar(
        select(func.count()).select_from(ComparisonVote)
        .join(Comparison, Comparison.id == ComparisonVote.comparison_id).where(Comparison.evaluation_id == ev.id)
    ) or 0
    return EvaluationRead(
        id=ev.id, name=ev.name, prompt_set_id=ev.prompt_set_id, job_id=ev.job_id,
        baseline_version_id=ev.baseline_version_id, candidate_version_id=ev.candidate_version_id,
        candidate_kind=ev.candidate_kind, votes_per_comparison=ev.votes_per_comparison,
        agreement_threshold=threshold, params=ev.params, created_at=ev.created_at,
        comparisons=len(comps), complete=complete, votes=votes, results=results, oracle=ev.oracle,
    )


def list_evaluations(session: Session, prompt_set_id: int | None = None) -> list[EvaluationRead]:
    query = select(Evaluation.id).order_by(Evaluation.id.desc())
    if prompt_set_id is not None:
        query = query.where(Evaluation.prompt_set_id == prompt_set_id)
    return [evaluation_results(session, i) for i in session.scalars(query)]
