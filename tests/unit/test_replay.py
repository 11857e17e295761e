"""The replay tool reads both queues that keep unsubmitted uploads: the on-failure destination and the rule's DLQ."""

from __future__ import annotations

from scripts.replay_submit_failures import original_event
from tests.conftest import load_event


def test_a_destination_record_replays_its_request_payload() -> None:
    event = load_event("s3-put.json")
    body = {"requestPayload": event, "responsePayload": {"errorMessage": "provider answered 503"}}
    assert original_event(body) == (event, ["uploads/My+Song%2B%281%29+%C3%A9.wav"], "provider answered 503")


def test_an_eventbridge_dead_letter_replays_the_event_itself() -> None:
    event = load_event("eventbridge-object-created.json")
    assert original_event(event) == (event, ["uploads/Take 2.Mp3"], "not delivered by EventBridge")
