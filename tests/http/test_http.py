"""The HTTP REST API of galgod (Iggy reference §6), driven with http.client only.

One galgod serves the whole module (see conftest.py); each test makes the streams and users it
needs under names of its own.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MAX_REQUEST_SIZE, Galgod

TIMEOUT = 15


class Api:
    """A tiny REST client: every call opens its own connection and returns (status, headers, body)."""

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.token = token

    def call(self, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None,
             headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        hdrs = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            try:
                conn.request(method, path, body=data, headers=hdrs)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) before reading the whole body
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp, payload
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, expect: int = 200, **kw):
        status, _, payload = self.call(method, path, body, **kw)
        assert status == expect, f"{method} {path}: {status} {payload!r}"
        return json.loads(payload) if payload else None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(payload: bytes, code: int, name: str) -> dict:
    err = json.loads(payload)
    assert set(err) == {"id", "code", "reason", "field"}, err
    assert err["id"] == code and err["code"] == name, err
    assert isinstance(err["reason"], str) and err["reason"]
    assert err["field"] is None or isinstance(err["field"], str)
    return err


def login(api: Api, username: str = "iggy", password: str = "iggy") -> str:
    ident = api.json("POST", "/users/login", {"username": username, "password": password}, token="")
    assert isinstance(ident["user_id"], int)
    tok = ident["access_token"]["token"]
    assert tok.count(".") == 2 and ident["access_token"]["expiry"] > 0
    return tok


@pytest.fixture(scope="module")
def root(galgod) -> Api:
    api = Api(galgod.http_port)
    api.token = login(api)
    return api


def test_ping_needs_no_token(galgod):
    status, resp, body = Api(galgod.http_port).call("GET", "/ping")
    assert status == 200 and body == b"pong"


def test_login_token_claims(root):
    header, claims, _ = root.token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(header)))["alg"] == "HS256"
    c = json.loads(base64.urlsafe_b64decode(pad(claims)))
    assert c["iss"] == c["aud"] == "iggy.apache.org" and c["sub"] == "0"
    assert c["exp"] - c["iat"] == 3600


def test_streams_topics_send_poll_offsets(root):
    s = root.json("POST", "/streams", {"name": "orders"})
    assert s["name"] == "orders" and s["topics_count"] == 0 and s["topics"] == []
    sid = s["id"]
    t = root.json("POST", "/streams/orders/topics", {"name": "created", "partitions_count": 3,
                                                      "compression_algorithm": "none", "message_expiry": 0,
                                                      "max_topic_size": 0})
    assert t["partitions_count"] == 3 and len(t["partitions"]) == 3
    assert [p["id"] for p in t["partitions"]] == [0, 1, 2]

    streams = root.json("GET", "/streams")
    assert any(x["name"] == "orders" for x in streams)
    got = root.json("GET", f"/streams/{sid}")
    assert got["topics_count"] == 1 and got["topics"][0]["name"] == "created"
    assert root.json("GET", "/streams/orders/topics")[0]["name"] == "created"

    payloads = [f"order-{i}".encode() for i in range(5)]
    headers = [{"key": {"kind": "string", "value": b64(b"source")},
                "value": {"kind": "string", "value": b64(b"web")}}]
    body = {"partitioning": {"kind": "partition_id", "value": b64((1).to_bytes(4, "little"))},
            "messages": [{"id": i + 1, "payload": b64(p), "user_headers": headers if i == 0 else []}
                         for i, p in enumerate(payloads)]}
    status, resp, raw = root.call("POST", "/streams/orders/topics/created/messages", body)
    assert status == 201, raw
    conf = json.loads(raw)["confirmations"]
    assert conf == [{"stream_id": sid, "topic_id": t["id"], "partition_id": 1, "base_offset": 0}]
    assert resp.getheader("iggy-durability") == "replicated-memory"

    polled = root.json("GET", "/streams/orders/topics/created/messages"
                              "?consumer_id=7&partition_id=1&kind=first&count=100")
    assert polled["partition_id"] == 1 and polled["count"] == 5 and polled["current_offset"] == 4
    msgs = polled["messages"]
    assert [base64.b64decode(m["payload"]) for m in msgs] == payloads
    assert [m["header"]["offset"] for m in msgs] == list(range(5))
    assert [m["header"]["id"] for m in msgs] == [1, 2, 3, 4, 5]
    # A message without headers has null ones (the SDK reports them as None, as over TCP).
    assert msgs[0]["user_headers"] == headers and msgs[1]["user_headers"] is None
    assert msgs[0]["header"]["payload_length"] == len(payloads[0])
    two = root.json("GET", "/streams/orders/topics/created/messages?partition_id=1&kind=offset&value=3&count=2")
    assert [m["header"]["offset"] for m in two["messages"]] == [3, 4]

    # Consumer offsets: store, read, next poll, delete.
    off = "/streams/orders/topics/created/consumer-offsets"
    root.json("PUT", off, {"consumer_id": 7, "partition_id": 1, "offset": 2}, expect=204)
    info = root.json("GET", off + "?consumer_id=7&partition_id=1")
    assert info == {"partition_id": 1, "current_offset": 4, "stored_offset": 2}
    nxt = root.json("GET", "/streams/orders/topics/created/messages?consumer_id=7&partition_id=1&kind=next&count=10"
                           "&auto_commit=true")
    assert [m["header"]["offset"] for m in nxt["messages"]] == [3, 4]
    assert root.json("GET", off + "?consumer_id=7&partition_id=1")["stored_offset"] == 4
    root.json("DELETE", off + "/7?partition_id=1", expect=204)
    status, _, raw = root.call("GET", off + "?consumer_id=7&partition_id=1")
    assert status == 404
    assert_error(raw, 3021, "consumer_offset_not_found")

    # Keyed and balanced partitioning, and ids given as hex or made by the server.
    keyed = root.json("POST", "/streams/orders/topics/created/messages",
                      {"partitioning": {"kind": "messages_key", "value": b64(b"k1")},
                       "messages": [{"payload": b64(b"keyed")}]}, expect=201)["confirmations"][0]
    bal = root.json("POST", "/streams/orders/topics/created/messages",
                    {"messages": [{"id": "01234567-89ab-cdef-0123-456789abcdef", "payload": b64(b"bal")}]},
                    expect=201)["confirmations"][0]
    got = root.json("GET", f"/streams/orders/topics/created/messages?partition_id={bal['partition_id']}"
                           f"&kind=offset&value={bal['base_offset']}&count=1")["messages"][0]
    assert got["header"]["id"] == 0x0123456789ABCDEF0123456789ABCDEF
    got = root.json("GET", f"/streams/orders/topics/created/messages?partition_id={keyed['partition_id']}"
                           f"&kind=offset&value={keyed['base_offset']}&count=1")["messages"][0]
    assert base64.b64decode(got["payload"]) == b"keyed" and got["header"]["id"] != 0

    topic = root.json("GET", "/streams/orders/topics/created")
    assert topic["messages_count"] == 7
    assert sum(p["messages_count"] for p in topic["partitions"]) == 7


def test_metadata_updates_partitions_groups(root):
    root.json("POST", "/streams", {"name": "meta-a"})
    root.json("PUT", "/streams/meta-a", {"name": "meta-b"}, expect=204)
    assert root.json("GET", "/streams/meta-b")["name"] == "meta-b"
    root.json("POST", "/streams/meta-b/topics", {"name": "t", "partitions_count": 1})
    root.json("PUT", "/streams/meta-b/topics/t", {"name": "t2", "message_expiry": 60_000_000}, expect=204)
    t = root.json("GET", "/streams/meta-b/topics/t2")
    assert t["message_expiry"] == 60_000_000 and t["options"]["message_expiry"]["explicit"] is True

    status, _, _ = root.call("POST", "/streams/meta-b/topics/t2/partitions", {"partitions_count": 2})
    assert status == 200
    assert root.json("GET", "/streams/meta-b/topics/t2")["partitions_count"] == 3
    root.json("DELETE", "/streams/meta-b/topics/t2/partitions?partitions_count=1", expect=204)
    assert root.json("GET", "/streams/meta-b/topics/t2")["partitions_count"] == 2

    g = root.json("POST", "/streams/meta-b/topics/t2/consumer-groups", {"name": "workers"})
    assert g["name"] == "workers" and g["members_count"] == 0 and g["members"] == []
    assert [x["name"] for x in root.json("GET", "/streams/meta-b/topics/t2/consumer-groups")] == ["workers"]
    assert root.json("GET", "/streams/meta-b/topics/t2/consumer-groups/workers")["id"] == g["id"]
    root.json("DELETE", f"/streams/meta-b/topics/t2/consumer-groups/{g['id']}", expect=204)
    status, _, raw = root.call("GET", "/streams/meta-b/topics/t2/consumer-groups/workers")
    assert status == 404

    root.json("POST", "/streams/meta-b/topics/t2/messages", {"messages": [{"payload": b64(b"x")}]}, expect=201)
    root.json("DELETE", "/streams/meta-b/topics/t2/purge", expect=204)
    assert root.json("GET", "/streams/meta-b/topics/t2")["messages_count"] == 0
    root.json("DELETE", "/streams/meta-b/purge", expect=204)
    root.json("DELETE", "/streams/meta-b/topics/t2", expect=204)
    root.json("DELETE", "/streams/meta-b", expect=204)
    status, _, raw = root.call("GET", "/streams/meta-b")
    assert status == 404


def test_system_routes(root):
    stats = root.json("GET", "/stats")
    assert stats["streams_count"] >= 1 and stats["iggy_server_version"]
    cluster = root.json("GET", "/cluster/metadata")
    node = cluster["nodes"][0]
    assert node["role"] == "leader" and node["status"] == "healthy" and node["endpoints"]["http"] == root.port
    assert isinstance(root.json("GET", "/clients"), list)
    opts = root.json("GET", "/options/topic")
    assert any(o["key"] == "message_expiry" for o in opts)
    me = root.json("GET", "/users/me")
    assert me["username"] == "iggy" and me["permissions"]["global"]["manage_servers"] is True


def test_users_and_personal_access_tokens(root):
    u = root.json("POST", "/users", {"username": "alice", "password": "secret1", "status": "active",
                                     "permissions": None})
    assert u["username"] == "alice" and u["status"] == "active" and u["permissions"] is None
    assert any(x["username"] == "alice" for x in root.json("GET", "/users"))
    alice = Api(root.port, login(root, "alice", "secret1"))

    # No permission to list streams: 403 with error 41.
    status, _, raw = alice.call("GET", "/streams")
    assert status == 403
    assert_error(raw, 41, "unauthorized")
    perms = {"permissions": {"global": {"read_streams": True},
                             "streams": {"0": {"read_stream": True, "topics": {"0": {"read_topic": True}}}}}}
    root.json("PUT", f"/users/{u['id']}/permissions", perms, expect=204)
    assert isinstance(alice.json("GET", "/streams"), list)
    details = root.json("GET", "/users/alice")
    assert details["permissions"]["global"]["read_streams"] is True
    assert details["permissions"]["streams"]["0"]["topics"]["0"]["read_topic"] is True

    alice.json("PUT", "/users/alice/password", {"current_password": "secret1", "new_password": "secret2"},
               expect=204)
    login(root, "alice", "secret2")
    status, _, raw = root.call("POST", "/users/login", {"username": "alice", "password": "secret1"}, token="")
    assert status == 400
    assert_error(raw, 42, "invalid_credentials")

    # Personal access tokens: create, list, use as a bearer and to log in, delete.
    tok = alice.json("POST", "/personal-access-tokens", {"name": "ci", "expiry": 0})["token"]
    assert [p["name"] for p in alice.json("GET", "/personal-access-tokens")] == ["ci"]
    pat = Api(root.port, tok)
    assert isinstance(pat.json("GET", "/streams"), list)
    assert pat.json("GET", "/users/me")["username"] == "alice"
    ident = root.json("POST", "/personal-access-tokens/login", {"token": tok}, token="")
    assert ident["user_id"] == u["id"]
    alice.json("DELETE", "/personal-access-tokens/ci", expect=204)
    status, _, raw = pat.call("GET", "/streams")
    assert status == 401
    assert_error(raw, 53, "invalid_personal_access_token")

    # Deactivate, then delete: her access token no longer works.
    root.json("PUT", "/users/alice", {"status": "inactive"}, expect=204)
    status, _, raw = alice.call("GET", "/streams")
    assert status == 401
    root.json("DELETE", "/users/alice", expect=204)
    status, _, _ = root.call("GET", "/users/alice")
    assert status == 404


def test_refresh_and_logout(root):
    api = Api(root.port, login(root))
    fresh = api.json("POST", "/users/refresh-token", {"token": api.token}, token="")
    assert fresh["access_token"]["token"] != api.token
    api.json("DELETE", "/users/logout", expect=204)
    status, _, raw = api.call("GET", "/streams")
    assert status == 401
    assert_error(raw, 78, "invalid_access_token")
    assert Api(root.port, fresh["access_token"]["token"]).call("GET", "/streams")[0] == 200


def test_errors(root):
    # Not found, with the error JSON shape.
    status, resp, raw = root.call("GET", "/streams/4000000")
    assert status == 404
    err = assert_error(raw, 1009, "stream_id_not_found")
    assert err["field"] == "stream_id"
    status, _, raw = root.call("DELETE", "/streams/4000000")
    assert status == 404
    assert_error(raw, 1009, "stream_id_not_found")
    status, _, raw = root.call("GET", "/no/such/route")
    assert status == 404
    # No token, a bad token, a tampered token.
    status, _, raw = root.call("GET", "/streams", token="")
    assert status == 401
    assert_error(raw, 77, "access_token_missing")
    status, _, raw = root.call("GET", "/streams", token="a.b.c")
    assert status == 401
    assert_error(raw, 78, "invalid_access_token")
    h, c, sig = root.token.split(".")
    status, _, _ = root.call("GET", "/streams", token=f"{h}.{c}.{'A' * len(sig)}")
    assert status == 401
    # Bad bodies: not JSON, a missing field, a wrong type, bad base64.
    status, _, raw = root.call("POST", "/streams", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400
    assert_error(raw, 4, "invalid_format")
    status, _, raw = root.call("POST", "/streams", {"nom": "x"})
    assert status == 400
    status, _, raw = root.call("POST", "/streams/0/topics", {"name": 5})
    assert status == 400
    root.json("POST", "/streams", {"name": "errs"})
    root.json("POST", "/streams/errs/topics", {"name": "t", "partitions_count": 1})
    status, _, raw = root.call("POST", "/streams/errs/topics/t/messages", {"messages": [{"payload": "!!!"}]})
    assert status == 400
    status, _, raw = root.call("POST", "/streams", {"name": "errs"})
    assert status == 400
    assert_error(raw, 1012, "stream_name_already_exists")
    # Too big: 413.
    big = {"messages": [{"payload": b64(b"x" * MAX_REQUEST_SIZE)}]}
    status, _, _ = root.call("POST", "/streams/errs/topics/t/messages", big)
    assert status == 413
    # The server is still fine afterwards.
    assert root.call("GET", "/streams/errs")[0] == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http2_prior_knowledge(root):
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-H", f"Authorization: Bearer {root.token}",
                          "-w", "\n%{http_version}", f"http://127.0.0.1:{root.port}/streams"],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True)
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "2" and isinstance(json.loads(body), list)


def test_metrics(root):
    root.json("POST", "/streams", {"name": "metered"})
    root.json("POST", "/streams/metered/topics", {"name": "m", "partitions_count": 2})
    sent = 0
    for batch in (3, 4):
        root.json("POST", "/streams/metered/topics/m/messages",
                  {"partitioning": {"kind": "partition_id", "value": 1},
                   "messages": [{"payload": b64(b"p" * 10)} for _ in range(batch)]}, expect=201)
        sent += batch
    status, resp, raw = root.call("GET", "/metrics")
    assert status == 200 and resp.getheader("content-type").startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(raw.decode())}
    by_part = {s.labels["partition"]: s.value for s in families["galgo_partition_messages"].samples
               if s.labels["stream"] == "metered" and s.labels["topic"] == "m"}
    assert by_part == {"0": 0, "1": sent}
    offsets = {s.labels["partition"]: s.value for s in families["galgo_partition_current_offset"].samples
               if s.labels["stream"] == "metered"}
    assert offsets["1"] == sent - 1
    assert any(s.value > 0 for s in families["galgo_partition_bytes"].samples if s.labels["stream"] == "metered")
    requests = {s.labels["transport"]: s.value for s in families["galgo_requests"].samples}
    assert requests["http"] > 0
    hist = [s for s in families["galgo_request_duration_seconds"].samples
            if s.name.endswith("_count") and s.labels["transport"] == "http"]
    assert hist and hist[0].value > 0
    # Raft: the single node leads the metadata group and both partitions' groups, nothing lags.
    leaders = {s.labels.get("partition", "meta"): s.value for s in families["galgo_raft_leader"].samples
               if s.labels["group"] == "meta" or s.labels.get("stream_id") is not None}
    assert leaders["meta"] == 1 and leaders["0"] == 1 and leaders["1"] == 1
    assert all(s.value >= 1 for s in families["galgo_raft_term"].samples)
    assert all(s.value == 0 for s in families["galgo_raft_apply_lag"].samples)


def test_metrics_are_open_by_default(root):
    """As Iggy serves them: a Prometheus scraper needs no token (http.metrics_auth defaults to false)."""
    status, resp, raw = Api(root.port).call("GET", "/metrics")
    assert status == 200 and resp.getheader("content-type").startswith("text/plain")
    assert "galgo_requests" in {f.name for f in text_string_to_metric_families(raw.decode())}


def test_metrics_need_a_token_with_metrics_auth(tmp_path):
    """--http.metrics_auth=true: no token is 401 (AccessTokenMissing), a bad one 401, a login's JWT 200."""
    srv = Galgod(tmp_path, ["--http.metrics_auth=true"])
    srv.start()
    try:
        api = Api(srv.http_port)
        status, _, raw = api.call("GET", "/metrics")
        assert status == 401
        assert_error(raw, 77, "access_token_missing")
        assert Api(srv.http_port, "not.a.jwt").call("GET", "/metrics")[0] == 401
        api.token = login(api)
        status, _, raw = api.call("GET", "/metrics")
        assert status == 200 and b"galgo_requests" in raw
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_fire_and_forget_segments_and_clients(root):
    root.json("POST", "/streams", {"name": "ff"})
    root.json("POST", "/streams/ff/topics", {"name": "t", "partitions_count": 1})
    status, _, raw = root.call("POST", "/streams/ff/topics/t/messages?ack=none",
                               {"messages": [{"payload": b64(b"a")}, {"payload": b64(b"b")}]})
    assert status == 202 and raw == b""
    # The messages become readable once durable (the answer did not wait for that).
    deadline = time.monotonic() + TIMEOUT
    while True:
        polled = root.json("GET", "/streams/ff/topics/t/messages?partition_id=0&kind=first&count=10")
        if polled["count"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [base64.b64decode(m["payload"]) for m in polled["messages"]] == [b"a", b"b"]
    # DeleteSegments of the only (active) segment keeps it.
    root.json("DELETE", "/streams/ff/topics/t/partitions/0?segments_count=1", expect=204)
    assert root.json("GET", "/streams/ff/topics/t")["messages_count"] == 2
    status, _, raw = root.call("GET", "/clients/999999")
    assert status == 404
    assert_error(raw, 100, "client_not_found")


def test_u64_values_beyond_int64_in_bodies(root):
    """u64::MAX (IggyExpiry::NeverExpire, unlimited size) travels as a bare JSON number and is read exactly;
    a number beyond u64 is a clear 400 and creates nothing."""
    assert root.json("POST", "/streams", {"name": "wide"})["name"] == "wide"
    t = root.json("POST", "/streams/wide/topics", {"name": "t", "partitions_count": 1, "compression_algorithm": "none",
                                                   "message_expiry": 0, "max_topic_size": 0})
    status, _, body = root.call("PUT", f"/streams/wide/topics/{t['id']}", raw=(
        b'{"name":"t","message_expiry":18446744073709551615,"max_topic_size":18446744073709551615,'
        b'"compression_algorithm":null,"options":{}}'), headers={"Content-Type": "application/json"})
    assert status in (200, 204), body
    got = root.json("GET", "/streams/wide/topics/t")
    assert got["message_expiry"] == 2**64 - 1 and got["max_topic_size"] == 2**64 - 1
    status, _, body = root.call("POST", "/streams/wide/topics", raw=(
        b'{"name":"t2","partitions_count":1,"compression_algorithm":"none","message_expiry":18446744073709551616,'
        b'"max_topic_size":0}'), headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert [x["name"] for x in root.json("GET", "/streams/wide/topics")] == ["t"]
