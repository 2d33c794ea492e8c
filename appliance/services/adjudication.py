"""One decision per person: what a posted judgement means once the candidates are grouped by subject.

The officer decides on people, not images: a person marked viable is viable in
every image of theirs, so the page offers one choice per person. A form that
says otherwise (two images of one person posted with different decisions, by a
stale page or a crafted request) is refused whole, never resolved by picking
one: the officer is asked again. People whose best score is below the
calibrated threshold are not candidates; they need no decision, and one left
undecided is recorded as not viable, counted apart in the audit.

Pure (no I/O), like ``policy``: the case service applies it and records the outcome.
"""

from __future__ import annotations

from appliance.services.candidate_view import PersonView
from appliance.services.policy import DECISION_LABELS, Decision
from core.errors import CustodyRfrError


class JudgementInvalid(CustodyRfrError):
    """The posted judgement cannot be recorded as it stands; the message says what to change."""


class ContradictoryJudgement(JudgementInvalid):
    """Two images of one person were given different decisions."""


def _who(person: PersonView) -> str:
    return f"Person {person.number} ({person.subject_ref})"


def decisions_by_rank(people: list[PersonView], posted: dict[int, str]) -> tuple[dict[int, str], int]:
    """Every candidate rank's decision from what was posted, and how many below-threshold people were left undecided.

    ``posted`` maps ranks to the value sent for them ("" for nothing chosen); a person's choice may come under
    any of their ranks (the page uses their best one).
    """
    owner = {rank: person for person in people for rank in person.ranks}
    unknown = sorted(r for r, value in posted.items() if value and r not in owner)
    if unknown:
        raise JudgementInvalid("That candidate is not part of this case. Reload the page and judge the people shown.")
    allowed = {d.value for d in Decision}
    if any(value and value not in allowed for value in posted.values()):
        raise JudgementInvalid("Choose viable, not viable or needs peer review for each person.")
    decided: dict[int, str] = {}
    missing: list[PersonView] = []
    undecided_below = 0
    for person in people:
        chosen = {posted[r] for r in person.ranks if posted.get(r)}
        if len(chosen) > 1:
            said = " and ".join(f"“{DECISION_LABELS[Decision(v)]}”" for v in sorted(chosen))
            raise ContradictoryJudgement(
                f"{_who(person)} was marked both {said}. One decision covers every image of a person: "
                "choose one for them.")
        if chosen:
            value = chosen.pop()
        elif person.below_threshold:
            value, undecided_below = Decision.NOT_VIABLE.value, undecided_below + 1
        else:
            missing.append(person)
            continue
        decided.update({rank: value for rank in person.ranks})
    if missing:
        raise JudgementInvalid("Mark every person above the threshold as viable, not viable or needs peer review: "
                               + ", ".join(_who(p) for p in missing) + " not decided.")
    return decided, undecided_below


def spread_to_people(people: list[PersonView], decisions: dict[int, str]) -> dict[int, str]:
    """A peer review's decisions (asked about each person's best image) applied to every image of that person.

    Where the outcome itself names two images of one person with different decisions, it is applied as it
    came: the desk does not overrule the reviewer.
    """
    spread = dict(decisions)
    for person in people:
        given = {decisions[r] for r in person.ranks if r in decisions}
        if len(given) == 1:
            value = given.pop()
            spread.update({rank: value for rank in person.ranks})
    return spread
