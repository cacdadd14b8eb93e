"""Client session ids, made unique across visitors.

GA4's ``sid`` is the session's start in epoch seconds, Segment's ``context.sessionId`` (as
RudderStack sends it) a device-side timestamp, the pixel's ``s`` whatever the page made up:
unique for one browser, not across shoppers, so two visitors who start a session in the
same second would share one. Those ids are scoped by the visitor:
``<anonymous_id, else user_id>:<id as sent>`` (the id alone when the event names no
visitor). Snowplow's ``domain_sessionid`` and PostHog's ``$session_id`` are UUIDs, unique
as sent, and stay as they are. The id as sent stays in the event (``context``,
``properties``, or ``extra.client_session_id``).
"""

from __future__ import annotations


def scoped_session_sql(session: str, anonymous_id: str, user_id: str) -> str:
    """SQL: the session id of an event whose client session id is ``session`` (NULL or ''
    for none) and whose visitor columns are ``anonymous_id`` / ``user_id`` (NULL or '')."""
    return (f"CASE WHEN coalesce({session}, '') <> '' THEN concat_ws(':', "
            f"coalesce(nullif({anonymous_id}, ''), nullif({user_id}, '')), {session}) END")


def scoped_session(session: str | None, anonymous_id: str | None,
                   user_id: str | None) -> str | None:
    """:func:`scoped_session_sql` in Python (for adapters parsed in Python)."""
    if not session:
        return None
    visitor = anonymous_id or user_id
    return f"{visitor}:{session}" if visitor else session
