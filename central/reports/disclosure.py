"""Small-count suppression for what the public sees.

The rule: in the public report, a count of 1 to 4 is shown as "fewer than 5";
0 and counts of 5 or more are shown as they are. A count that small, put next
to a date, a desk and a local news story, could point to one detainee. The
board's quarterly report is not published and shows exact counts.

Known limit: there is no secondary suppression, so a suppressed cell can
sometimes be worked out from a total and the other cells of the same table.
The tables' categories are broad, which keeps that rare; the public report
says so.
"""

from __future__ import annotations

LIMIT = 5
SMALL = f"fewer than {LIMIT}"
RULE = (f"To protect the people involved, any count from 1 to {LIMIT - 1} is shown as \"{SMALL}\". "
        "Zero is shown as 0.")


def suppressed(count: int) -> bool:
    return 0 < count < LIMIT


def shown(count: int) -> str:
    """The count as the public report prints it."""
    return SMALL if suppressed(count) else f"{count:,}"
