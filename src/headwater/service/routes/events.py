"""Publish and consume events, and manage dead letters, as the request's principal.

Publishing needs ``publish`` on the topic (never a reserved CDC topic); the payload is validated
against the topic's schema and its PII fields sealed. Consuming needs ``consume`` (and, for a
topic derived from a dataset, ``select`` on it): sealed values are opened and the dataset's
column rules and row filters applied, as ``events tail`` does. Dead letters need ``admin`` on
their topic; their values are shown as stored (sealed PII stays sealed)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field

from headwater.principal import Principal
from headwater.service.deps import platform_of, principal
from headwater.service.problems import PROBLEM_RESPONSES

__all__ = ["PublishRequest", "router"]

router = APIRouter(prefix="/v1", tags=["events"], responses=PROBLEM_RESPONSES)

Topic = Annotated[str, Path(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$",
                            description="Topic name.", examples=["orders"])]


class PublishRequest(BaseModel):
    """One event to publish: its CloudEvents type and payload, and optional attributes."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=255, description="CloudEvents type (`com.example.order.created`).")
    data: Any = Field(None, description="The payload; validated against the topic's registered schema.")
    subject: str | None = Field(None, max_length=255, description="What the event is about (default partition key).")
    key: str | None = Field(None, max_length=255, description="Partition key (default: subject).")
    id: str | None = Field(None, min_length=1, max_length=255, description="Event id (default: a random UUID); "
                           "consumers de-duplicate on it.")
    source: str | None = Field(None, min_length=1, max_length=255, description="CloudEvents source "
                               "(default: /headwater/http/<principal>).")


class Published(BaseModel):
    """Where the event landed."""

    id: str
    topic: str
    partition: int
    offset: int
    duplicate: bool = Field(description="The bus already held an event with this id.")
    schemaid: int | None = None


class ConsumedEvents(BaseModel):
    """Events fetched for the consumer group (and acknowledged), as the principal may see them."""

    topic: str
    group: str
    events: list[dict[str, Any]] = Field(description="CloudEvents structured-mode JSON objects, governed.")


class DeadLetterInfo(BaseModel):
    """One dead letter: why it failed, where, and its replay state."""

    id: int
    status: str
    stage: str
    error_class: str
    error_message: str
    attempts: int
    first_failure_at: str
    last_failure_at: str
    consumer_group: str
    topic: str
    partition: int
    offset: int
    event_id: str | None = None
    event_type: str | None = None
    key: str | None = None
    replay_count: int
    replayed_at: str | None = None
    value: str = Field(description="The original message as text (invalid UTF-8 replaced).")


class ReplayRequest(BaseModel):
    """Which dead letters to re-publish, and how."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1, le=2**62)]] | None = Field(None, max_length=10_000,
                                                                    description="Only these dead letters.")
    topic: str | None = Field(None, max_length=249, description="Only those that failed on this topic.")
    consumer_group: str | None = Field(None, max_length=255)
    error_class: str | None = Field(None, max_length=255)
    event_type: str | None = Field(None, max_length=255)
    to_topic: str | None = Field(None, min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$",
                                 description="Re-publish here instead of the original topic.")
    dry_run: bool = Field(False, description="Report what would be replayed; publish nothing.")
    max_replays: int = Field(3, ge=1, le=1000, description="Loop guard: refuse letters replayed this often.")
    force: bool = Field(False, description="Replay past the loop guard.")
    limit: int | None = Field(100, ge=1, le=100_000)


class ReplayOutcomeInfo(BaseModel):
    """What happened to one dead letter."""

    id: int
    action: str = Field(description="`replayed`, `would replay` (dry run) or `refused` (loop guard).")
    topic: str
    reason: str | None = None


class ReplayResponse(BaseModel):
    """The replay's report."""

    dry_run: bool
    replayed: int
    refused: int
    outcomes: list[ReplayOutcomeInfo]


@router.post("/events/{topic}", response_model=Published, status_code=201, summary="Publish an event",
             operation_id="publish_event")
def publish_event(topic: Topic, body: PublishRequest, platform: Any = Depends(platform_of),
                  who: Principal = Depends(principal)) -> Published:
    """Validate the payload against the topic's schema (`<topic>-value`), then publish it (audited)."""
    from headwater.events.envelope import Event

    attrs: dict[str, Any] = {}
    if body.id is not None:
        attrs["id"] = body.id
    source = body.source or f"/headwater/http/{who.name}"
    event = Event(type=body.type, source=source, data=body.data, subject=body.subject, **attrs)
    producer = platform.producer(source, principal=who)
    stamped = producer.prepare(topic, event)  # authorised, validated, PII sealed
    result = producer.bus.publish(topic, stamped, body.key)
    from headwater.audit import AuditEvent

    platform.record(AuditEvent(actor=who.name, action="publish", reason=f"{topic} <- {stamped.type}",
                               extra={"topic": result.topic, "partition": result.partition, "offset": result.offset,
                                      "event_id": stamped.id, "schemaid": stamped.schemaid,
                                      "duplicate": bool(result.duplicate)}))
    return Published(id=stamped.id, topic=result.topic, partition=result.partition, offset=result.offset,
                     duplicate=bool(result.duplicate), schemaid=stamped.schemaid)


@router.get("/events/{topic}", response_model=ConsumedEvents, summary="Consume events",
            operation_id="consume_events")
def consume_events(
    topic: Topic,
    group: Annotated[str | None, Query(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$",
                                       description="Consumer group (default: http-<principal>); "
                                                   "offsets are committed.")] = None,
    max_events: Annotated[int, Query(alias="max", ge=1, le=1000, description="At most this many events.")] = 100,
    timeout: Annotated[float, Query(ge=0, le=30, description="Seconds to wait for the first event.")] = 1.0,
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> ConsumedEvents:
    """Fetch and acknowledge up to `max` events of the topic for the group, governed as `events
    tail` governs them (consume grant; PII opened, then the dataset's column rules)."""
    from headwater.events.bus.errors import InvalidEvent

    name = group or f"http-{who.name}"
    consumer = platform.consumer(topic, name, principal=who)
    try:
        messages = consumer.fetch(max_events, timeout=timeout)
        docs = []
        for m in messages:
            try:
                docs.append(m.event().to_dict())
            except InvalidEvent as err:
                docs.append({"undecodable": type(err).__name__, "offset": m.offset})
        consumer.ack_many(messages)
    finally:
        consumer.close()
    return ConsumedEvents(topic=topic, group=name, events=jsonable_encoder(docs))


@router.get("/dead-letters", response_model=list[DeadLetterInfo], summary="List dead letters",
            operation_id="list_dead_letters")
def list_dead_letters(
    status: Annotated[str | None, Query(pattern=r"^(dead|replayed|discarded)$",
                                        description="dead (default), replayed or discarded.")] = "dead",
    topic: Annotated[str | None, Query(max_length=249)] = None,
    consumer_group: Annotated[str | None, Query(max_length=255)] = None,
    stage: Annotated[str | None, Query(pattern=r"^(deserialise|validate|route|handle|sink)$")] = None,
    error_class: Annotated[str | None, Query(max_length=255)] = None,
    since: Annotated[dt.datetime | None, Query(description="Last failure at or after (ISO 8601).")] = None,
    until: Annotated[dt.datetime | None, Query(description="Last failure before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> list[DeadLetterInfo]:
    """Dead letters matching every filter, oldest first (of the topics the principal administers)."""
    store = platform.event_governance.dead_letters(who)
    letters = store.list(status=status, topic=topic, consumer_group=consumer_group, stage=stage,
                         error_class=error_class, since=_utc(since), until=_utc(until), limit=limit)
    return [DeadLetterInfo(**dl.to_dict()) for dl in letters]


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterInfo, summary="Show a dead letter",
            operation_id="show_dead_letter")
def show_dead_letter(dead_letter_id: Annotated[int, Path(ge=1, le=2**62)], platform: Any = Depends(platform_of),
                     who: Principal = Depends(principal)) -> DeadLetterInfo:
    """One dead letter with its original bytes (`admin` on its topic)."""
    return DeadLetterInfo(**platform.event_governance.dead_letters(who).get(dead_letter_id).to_dict())


@router.post("/dead-letters/replay", response_model=ReplayResponse, summary="Replay dead letters",
             operation_id="replay_dead_letters")
def replay_dead_letters(body: ReplayRequest, platform: Any = Depends(platform_of),
                        who: Principal = Depends(principal)) -> ReplayResponse:
    """Re-publish matching dead letters of the topics the principal administers, bytes intact
    (audited; loop-guarded; dry run available)."""
    options = body.model_dump(exclude_none=True)
    report = platform.replay_dead_letters(actor=who.name, principal=who, **options)
    return ReplayResponse(dry_run=report.dry_run, replayed=report.replayed, refused=report.refused,
                          outcomes=[ReplayOutcomeInfo(id=o.id, action=o.action, topic=o.topic, reason=o.reason)
                                    for o in report.outcomes])


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
