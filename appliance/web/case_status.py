"""What the officer's open case page watches for while someone else holds the next step.

While a case waits for its approver or for a peer review, the officer's page asks the desk every
few seconds whether the case has moved on (htmx polling of ``cases.status``). The answer is 204
while nothing has changed, so a waiting page costs one small request per poll; once the case
moves on, the page's body is swapped in place and a polite live region says what happened, so a
screen reader hears it and focus stays where it was. Polling stops by itself when the case
reaches a step where only the officer can act, since nothing can then change behind their back.
"""

from __future__ import annotations

from appliance.services.cases import Case, State

#: Seconds between polls: a hand-off is a matter of minutes, and the desk is shared by every open page.
POLL_SECONDS = 5

# The steps that others complete: the approver (or technical adviser), and the peer reviewer.
_WAITING_ON_OTHERS = frozenset({State.AWAITING_APPROVAL, State.AWAITING_PEER_REVIEW})


def status_token(case: Case) -> str:
    """Changes whenever what the officer's page shows about the hand-off changes."""
    return f"{case.state.value}.{'advised' if case.advice_by else 'unadvised'}"


def polls(case: Case, is_owner: bool) -> bool:
    """Whether the page keeps watching: only its officer's, and only while others hold the next step."""
    return is_owner and case.state in _WAITING_ON_OTHERS


def announcement(case: Case) -> str:
    """One sentence for the live region: what happened, and what the officer does next."""
    state = case.state
    if state is State.APPROVED:
        return f"Approved by {case.approved_by}. You can now take the photo."
    if state is State.REFUSED:
        return f"Refused by {case.refused_by}. The case is closed; no search will run."
    if state is State.RETURNED:
        return f"Returned for changes by {case.returned_by}. Change the request and send it again."
    if state is State.AWAITING_MATCH_REPORT:
        return "The peer review is back: a candidate is viable. Write the Match Report."
    if state is State.CLOSED_NO_MATCH:
        return "The peer review is back: no viable match. The case is closed and the photo destroyed."
    if state is State.AWAITING_APPROVAL and case.advice_by:
        return f"Technical advice recorded by {case.advice_by}. Still waiting for approval."
    if state is State.WITHDRAWN:
        return "This request was withdrawn. The case is closed."
    return "This case has moved on to the next step."
