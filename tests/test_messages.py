"""Message contracts: every message round-trips, and bad payloads raise ContractError naming the field."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.messages import (
    Aggregate,
    Alert,
    Contribution,
    DeploymentAck,
    FeatureStats,
    GoldenPair,
    MaintenanceEvent,
    ModelDeployment,
    ModelManifest,
    ScoreStats,
    Snapshot,
    Status,
    Uplink,
    UplinkBatch,
    decode_deployment,
    decode_event,
    decode_manifest,
    decode_uplink,
    decode_uplink_batch,
    encode,
)
from shared.timebase import MIN_TIMESTAMP_NS, NS_PER_S, now_ns

NOW = now_ns()
idents = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
feature_names = st.from_regex(r"\A[a-z]{1,10}\.[a-z_0-9]{1,12}\Z")
finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
seqs = st.integers(min_value=0, max_value=2**63 - 1)
times = st.integers(min_value=MIN_TIMESTAMP_NS, max_value=NOW)
texts = st.text(max_size=40)
model_kinds = st.sampled_from(["baseline", "onnx"])
sha = st.from_regex(r"\A[0-9a-f]{64}\Z")

aggregates = st.builds(
    Aggregate,
    gateway_id=idents,
    asset_id=idents,
    seq=seqs,
    period_start_ns=times,
    period_end_ns=st.just(NOW),
    feature_spec=texts,
    features=st.dictionaries(feature_names, st.builds(FeatureStats, finite, finite, finite), max_size=5),
    score=st.builds(
        ScoreStats,
        mean=finite,
        max=finite,
        threshold=finite,
        n_windows=st.integers(0, 10_000),
        n_above_threshold=st.integers(0, 10_000),
    ),
    model_version=texts,
    model_kind=model_kinds,
)
alerts = st.builds(
    Alert,
    gateway_id=idents,
    asset_id=idents,
    seq=seqs,
    alert_id=st.from_regex(r"\A[A-Za-z0-9_.:-]{1,40}\Z"),
    state=st.sampled_from(["raised", "cleared"]),
    severity=st.sampled_from(["info", "warning", "critical"]),
    ts_ns=times,
    score=finite,
    threshold=finite,
    model_version=texts,
    model_kind=model_kinds,
    top_features=st.lists(
        st.builds(Contribution, feature=feature_names, value=finite, contribution=finite), max_size=3
    ),
    message=texts,
)
snapshots = st.builds(
    Snapshot,
    gateway_id=idents,
    asset_id=idents,
    sensor=idents,
    seq=seqs,
    alert_id=texts,
    start_ns=times,
    sample_rate_hz=st.floats(min_value=0.1, max_value=1e6),
    samples=st.lists(finite, min_size=1, max_size=20),
)
statuses = st.builds(
    Status,
    gateway_id=idents,
    ts_ns=times,
    state=st.sampled_from(["online", "offline"]),
    seq=st.none() | seqs,
    uptime_s=st.floats(min_value=0, max_value=1e9),
    metrics=st.dictionaries(feature_names, finite, max_size=5),
    model_versions=st.dictionaries(idents, texts, max_size=3),
    cpu_percent=st.floats(min_value=0, max_value=400),
    memory_bytes=st.integers(0, 2**40),
)
acks = st.builds(
    DeploymentAck,
    gateway_id=idents,
    seq=seqs,
    target=idents,
    version=st.integers(1, 10_000),
    ok=st.booleans(),
    reason=texts,
    ts_ns=times,
)
events = st.builds(
    MaintenanceEvent,
    asset_id=idents,
    ts_ns=times,
    event=st.sampled_from(["failure", "maintenance"]),
    mode=texts,
    source=texts,
    note=texts,
)
manifests = st.builds(
    ModelManifest,
    target=idents,
    version=st.integers(1, 10_000),
    model_type=texts,
    artifact_sha256=sha,
    feature_spec=texts,
    feature_names=st.lists(feature_names, min_size=1, max_size=5),
    threshold=finite,
    created_ns=times,
    golden=st.lists(st.builds(GoldenPair, st.lists(finite, max_size=3), finite), max_size=2),
)
deployments = st.builds(
    ModelDeployment,
    target=idents,
    version=st.integers(1, 10_000),
    manifest_json=texts,
    signature_b64=st.from_regex(r"\A[A-Za-z0-9+/=]{0,88}\Z"),
    chunk_count=st.integers(1, 100),
    artifact_bytes=st.integers(1, 10**9),
    is_rollback=st.booleans(),
)


@given(st.one_of(aggregates, alerts, snapshots, statuses, acks))
def test_uplink_round_trip(message: msgspec.Struct) -> None:
    assert decode_uplink(encode(message), reference_ns=NOW) == message


@given(events)
def test_event_round_trip(message: MaintenanceEvent) -> None:
    assert decode_event(encode(message), reference_ns=NOW) == message


@given(manifests)
def test_manifest_round_trip(message: ModelManifest) -> None:
    assert decode_manifest(encode(message)) == message
    assert decode_manifest(encode(message).decode()) == message


@given(deployments)
def test_deployment_round_trip(message: ModelDeployment) -> None:
    assert decode_deployment(encode(message)) == message


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_contract_error(payload: bytes) -> None:
    for decode in (decode_uplink, decode_event, decode_deployment, decode_manifest):
        with contextlib.suppress(ContractError):
            decode(payload)


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
)


@given(
    json_documents | st.fixed_dictionaries({"kind": st.sampled_from(["aggregate/1", "alert/1", "status/1"])})
)
def test_arbitrary_json_decodes_or_raises_contract_error(document: object) -> None:
    payload = msgspec.json.encode(document)
    for decode in (decode_uplink, decode_event, decode_deployment, decode_manifest):
        with contextlib.suppress(ContractError):
            decode(payload)


GOOD = encode(
    Aggregate(
        gateway_id="gw-1",
        asset_id="pump-1",
        seq=3,
        period_start_ns=NOW - 10 * NS_PER_S,
        period_end_ns=NOW,
        feature_spec="vib-temp-current@1",
        features={"vibration.rms": FeatureStats(1.0, 0.5, 2.0)},
        score=ScoreStats(mean=0.1, max=0.2, threshold=1.0, n_windows=97, n_above_threshold=0),
        model_version="baseline",
        model_kind="baseline",
    )
)
FAR_FUTURE = NOW + 400 * 24 * 3600 * NS_PER_S

# The table of known-bad payloads: each with the field its error must name.
BAD_UPLINKS = [
    (b"", "payload"),
    (GOOD[:-10], "payload"),  # truncated
    (b" " * (1 << 20) + GOOD, "payload"),  # oversized
    (b"[1,2,3]", "payload"),
    (GOOD.replace(b'"aggregate/1"', b'"aggregate/7"'), "kind"),  # unknown schema version
    (GOOD.replace(b'"aggregate/1"', b'"nonsense/1"'), "kind"),
    (GOOD.replace(b'"seq":3', b'"seq":-3'), "seq"),
    (GOOD.replace(b'"seq":3', b'"seq":"3"'), "seq"),  # wrong type
    (GOOD.replace(b'"seq":3,', b""), "seq"),  # missing
    (GOOD.replace(b'"gateway_id":"gw-1"', b'"gateway_id":"gw/1"'), "gateway_id"),
    (GOOD.replace(b"[1.0,0.5,2.0]", b"[1e999,0.5,2.0]"), "features[...][0]"),  # inf
    (GOOD.replace(b"[1.0,0.5,2.0]", b"[null,0.5,2.0]"), "features[...][0]"),  # NaN encodes as null
    (GOOD.replace(b'"model_kind":"baseline"', b'"model_kind":"magic"'), "model_kind"),
    (GOOD.replace(b'"vibration.rms"', b'"vibration rms"'), "features"),  # bad feature name
    (GOOD.replace(b'"vibration.rms"', b'""'), "features"),
    (GOOD.replace(str(NOW).encode(), str(FAR_FUTURE).encode()), "period_end_ns"),  # far future
    (GOOD.replace(str(NOW - 10 * NS_PER_S).encode(), b"1000"), "period_start_ns"),  # far past
]


@pytest.mark.parametrize(("payload", "field"), BAD_UPLINKS)
def test_bad_uplinks_name_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_uplink(payload, reference_ns=NOW)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}=")


def test_error_message_names_value_and_rule() -> None:
    with pytest.raises(ContractError) as caught:
        decode_uplink(GOOD.replace(b'"seq":3', b'"seq":-3'))
    assert str(caught.value) == "seq=-3: expected `int` >= 0"
    assert caught.value.reason == "seq"


def test_period_must_not_end_before_it_starts() -> None:
    payload = GOOD.replace(str(NOW - 10 * NS_PER_S).encode(), str(NOW + NS_PER_S).encode())
    with pytest.raises(ContractError, match="period_end_ns"):
        decode_uplink(payload, reference_ns=NOW)


def test_feature_stats_are_compact_arrays() -> None:
    assert b'"vibration.rms":[1.0,0.5,2.0]' in GOOD


@given(gateway=idents, members=st.lists(st.one_of(aggregates, alerts, statuses), min_size=1, max_size=4))
@pytest.mark.slow
def test_uplink_batch_round_trip(gateway: str, members: list[Aggregate | Alert | Status]) -> None:
    own: list[Uplink] = [msgspec.structs.replace(member, gateway_id=gateway) for member in members]
    batch = UplinkBatch(gateway_id=gateway, messages=own)
    assert decode_uplink_batch(encode(batch), reference_ns=NOW) == batch


def _batch_of(payloads: list[bytes]) -> bytes:
    return b'{"kind":"batch/1","gateway_id":"gw-1","messages":[' + b",".join(payloads) + b"]}"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (_batch_of([]), "messages"),
        (
            _batch_of([GOOD, GOOD.replace(b'"gateway_id":"gw-1"', b'"gateway_id":"gw-2"')]),
            "messages[1].gateway_id",
        ),
        (_batch_of([GOOD, GOOD.replace(b'"seq":3', b'"seq":-3')]), "messages[1].seq"),
        (_batch_of([GOOD.replace(b'"aggregate/1"', b'"aggregate/7"')]), "messages[0].kind"),
        (_batch_of([GOOD.replace(str(NOW).encode(), str(FAR_FUTURE).encode())]), "messages[0].period_end_ns"),
        (_batch_of([GOOD])[:-5], "payload"),
        (_batch_of([GOOD, GOOD.replace(b'"vibration.rms"', b'"vib/rms"')]), "messages[1].features"),
    ],
)
def test_bad_uplink_batches_name_the_member_and_field(payload: bytes, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_uplink_batch(payload, reference_ns=NOW)
    assert caught.value.field == field
