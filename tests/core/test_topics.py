import pytest

from core.errors import WireFormatError
from core.topics import AUDIT_SUBSCRIPTION, audit_topic, device_from_audit_topic


def test_audit_topic_round_trips_device_id():
    assert device_from_audit_topic(audit_topic("desk-07")) == "desk-07"


def test_subscription_matches_the_topic_shape():
    assert AUDIT_SUBSCRIPTION.replace("+", "desk-07") == audit_topic("desk-07")


@pytest.mark.parametrize("device_id", ["", "A", "desk/1", "desk+", "#", "x" * 64])
def test_device_ids_that_could_escape_their_topic_are_refused(device_id):
    with pytest.raises(WireFormatError):
        audit_topic(device_id)


@pytest.mark.parametrize("topic", ["rfr/v1/devices/desk-01/health", "rfr/v1/devices/audit", "other/desk-01/audit"])
def test_non_audit_topics_are_refused(topic):
    with pytest.raises(WireFormatError):
        device_from_audit_topic(topic)
