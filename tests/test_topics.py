"""Topic builders and the parser agree, and the parser rejects everything outside the tree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import topics
from shared.errors import ContractError
from shared.topics import ParsedTopic, TopicKind

idents = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")


@given(asset=idents, sensor=idents)
def test_raw_round_trip(asset: str, sensor: str) -> None:
    assert topics.parse(topics.raw(asset, sensor)) == ParsedTopic(
        TopicKind.RAW, asset_id=asset, sensor=sensor
    )


@given(gateway=idents)
def test_gateway_topics_round_trip(gateway: str) -> None:
    builders = {
        TopicKind.AGGREGATE: topics.aggregate,
        TopicKind.ALERT: topics.alert,
        TopicKind.SNAPSHOT: topics.snapshot,
        TopicKind.STATUS: topics.status,
        TopicKind.DEPLOY_ACK: topics.deploy_ack,
        TopicKind.BATCH: topics.batch,
    }
    for kind, build in builders.items():
        assert topics.parse(build(gateway)) == ParsedTopic(kind, gateway_id=gateway)


@given(asset=idents, target=idents, index=st.integers(min_value=0, max_value=10_000))
def test_asset_and_model_topics_round_trip(asset: str, target: str, index: int) -> None:
    assert topics.parse(topics.event(asset)) == ParsedTopic(TopicKind.EVENT, asset_id=asset)
    assert topics.parse(topics.plant_alert(asset)) == ParsedTopic(TopicKind.PLANT_ALERT, asset_id=asset)
    assert topics.parse(topics.model_deployment(target)) == ParsedTopic(TopicKind.DEPLOYMENT, target=target)
    assert topics.parse(topics.model_chunk(target, index)) == ParsedTopic(
        TopicKind.MODEL_CHUNK, target=target, chunk_index=index
    )


def test_topics_are_versioned_and_documented_shape() -> None:
    assert topics.raw("pump-1", "vibration") == "forewarn/v1/raw/pump-1/vibration"
    assert topics.aggregate("gw-1") == "forewarn/v1/gw/gw-1/aggregate"
    assert topics.subscription(TopicKind.AGGREGATE) == "forewarn/v1/gw/+/aggregate"
    assert topics.subscription(TopicKind.RAW) == "forewarn/v1/raw/+/+"
    assert topics.shared_subscription("ingest", "forewarn/v1/gw/+/aggregate") == (
        "$share/ingest/forewarn/v1/gw/+/aggregate"
    )


@pytest.mark.parametrize(
    ("topic", "field"),
    [
        ("other/v1/raw/a/b", "topic"),
        ("forewarn/v2/raw/a/b", "topic"),
        ("forewarn/v1/raw/a", "topic"),
        ("forewarn/v1/gw/g1/unknown", "topic"),
        ("forewarn/v1/models/t/chunk/x", "topic"),
        ("forewarn/v1/raw/-bad/vibration", "asset_id"),
        ("forewarn/v1/gw/g#/status", "gateway_id"),
    ],
)
def test_parse_rejects_topics_outside_the_tree(topic: str, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        topics.parse(topic)
    assert caught.value.field == field


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "#", "x" * 65, "-lead"])
def test_builders_reject_bad_identifiers(bad: str) -> None:
    with pytest.raises(ContractError, match="asset_id"):
        topics.event(bad)


def test_signing_key_topic_parses_and_acl_trees_cover_their_topics() -> None:
    assert topics.parse(topics.signing_key()) == ParsedTopic(TopicKind.SIGNING_KEY)
    assert topics.subscription(TopicKind.SIGNING_KEY) == topics.signing_key()
    assert topics.gateway_tree("gw-1") == "forewarn/v1/gw/gw-1/#"
    assert topics.aggregate("gw-1").startswith(topics.gateway_tree("gw-1")[:-1])
    assert topics.model_chunk("pump-1", 3).startswith(topics.model_tree("pump-1")[:-1])
    with pytest.raises(ContractError):
        topics.gateway_tree("#")
