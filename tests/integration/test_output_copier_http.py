"""The copier against real HTTP(S) servers on 127.0.0.1: content codings, pinned addresses, redirects, TLS."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import trustme
from moto import mock_aws
from urllib3.response import HTTPResponse

from denoise_pipeline.adapters.output_copier import CopyError, OutputCopier, OutputRefused, OutputTooLarge, UrlPolicy
from tests.s3_limits import MIB, enforce_s3_limits

BUCKET = "copier-bucket"
AUDIO = bytes((i * 7 + i // 251) % 256 for i in range(64 * 1024)) * 48  # 3 MiB, compressible like a wav's silence


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    send: int | None = None  # bytes of the body actually sent before the connection is shut (default: all)


@dataclass
class Seen:
    path: str
    host: str | None
    accept_encoding: str | None


@dataclass
class Origin:
    """A threaded HTTP(S) server on 127.0.0.1 answering fixed replies and recording what each request presented."""

    scheme: str
    port: int = 0
    replies: dict[str, Reply] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def origin(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            return

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            origin.seen.append(Seen(self.path, self.headers.get("Host"), self.headers.get("Accept-Encoding")))
            reply = origin.replies.get(self.path, Reply(b"not found", 404))
            self.send_response(reply.status)
            for name, value in {"Content-Length": str(len(reply.body)), **reply.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(reply.body[: reply.send])
                self.wfile.flush()
                if reply.send is not None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                return

    return Handler


@contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[Origin]:
    origin = Origin("https" if tls else "http")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(origin))
    server.daemon_threads = True
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: origin.sni.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    origin.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()


class Dns:
    """A resolver answering from one table for the first question and another for every later one (rebinding)."""

    def __init__(self, first: dict[str, list[str]], later: dict[str, list[str]] | None = None) -> None:
        self._first, self._later = first, later if later is not None else first
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        table = self._first if len(self.calls) == 1 else self._later
        if host not in table:
            raise OSError(f"{host}: no such host (test)")
        return table[host]


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def origin() -> Iterator[Origin]:
    with serving() as server:
        yield server


@pytest.fixture
def name_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Host names (not address literals) anything in the process asked the system resolver about."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in str(host) else socket.AF_INET, str(host))
        except OSError:
            asked.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    return asked


def copy(copier: OutputCopier, url: str, key: str = "out.wav") -> int:
    return copier.copy(url, BUCKET, key, content_type="audio/wav", metadata={"job-id": "job-1"})


def stored(s3: Any, key: str = "out.wav") -> bytes:
    body: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


def nothing_stored(s3: Any) -> bool:
    objects = s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    return objects == 0 and not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


# --- content codings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),  # applied in the order listed
        ("identity", lambda data: data),
        ("GZIP", gzip.compress),
    ],
)
def test_an_encoded_output_is_stored_decoded(s3: Any, origin: Origin, coding: str, encode: Any) -> None:
    wire = encode(AUDIO)
    origin.replies["/f"] = Reply(wire, headers={"Content-Encoding": coding})
    copier = OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=len(AUDIO))  # the cap fits the decoded size
    assert copy(copier, origin.url("/f")) == len(AUDIO)
    assert stored(s3) == AUDIO
    assert s3.head_object(Bucket=BUCKET, Key="out.wav")["ContentLength"] == len(AUDIO)
    assert origin.seen[0].accept_encoding == "identity"


def test_a_large_gzip_output_is_uploaded_in_full_parts(s3: Any, origin: Origin) -> None:
    enforce_s3_limits(s3)  # a short part other than the last would be EntityTooSmall at completion
    audio = AUDIO * 7  # 21 MiB decoded: parts of 8, 8 and 5 MiB
    origin.replies["/big"] = Reply(gzip.compress(audio, compresslevel=1), headers={"Content-Encoding": "gzip"})
    copier = OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=len(audio))
    assert copy(copier, origin.url("/big")) == len(audio)
    assert stored(s3) == audio


@pytest.mark.parametrize("coding", ["compress", "x-custom", "gzip, x-custom", "gzip, identity"])
def test_a_coding_that_cannot_be_decoded_is_refused(s3: Any, origin: Origin, coding: str) -> None:
    origin.replies["/f"] = Reply(gzip.compress(AUDIO), headers={"Content-Encoding": coding})
    copier = OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=10 * MIB)
    with pytest.raises(OutputRefused, match="cannot be decoded"):
        copy(copier, origin.url("/f"))
    assert nothing_stored(s3)


@pytest.mark.skipif("br" in HTTPResponse.CONTENT_DECODERS, reason="brotli is installed: br can be decoded")
def test_brotli_without_its_decoder_is_refused(s3: Any, origin: Origin) -> None:
    origin.replies["/f"] = Reply(b"\x8b\x02\x80hello\x03", headers={"Content-Encoding": "br"})
    with pytest.raises(OutputRefused, match="br"):
        copy(OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=MIB), origin.url("/f"))


def test_a_zip_bomb_is_refused_at_the_decoded_cap(s3: Any, origin: Origin) -> None:
    bomb = gzip.compress(bytes(64 * MIB))  # 64 KiB on the wire
    origin.replies["/bomb"] = Reply(bomb, headers={"Content-Encoding": "gzip"})
    copier = OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=9 * MIB)
    with pytest.raises(OutputTooLarge, match="cap"):
        copy(copier, origin.url("/bomb"))
    assert nothing_stored(s3)


def test_an_encoded_body_cut_short_is_retryable_and_leaves_nothing(s3: Any, origin: Origin) -> None:
    wire = gzip.compress(AUDIO * 4, compresslevel=1)
    origin.replies["/cut"] = Reply(wire, headers={"Content-Encoding": "gzip"}, send=len(wire) // 2)
    copier = OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=100 * MIB)
    with pytest.raises(CopyError) as caught:
        copy(copier, origin.url("/cut"))
    assert not isinstance(caught.value, OutputRefused | OutputTooLarge)
    assert nothing_stored(s3)


def test_a_corrupt_encoding_is_a_copy_error(s3: Any, origin: Origin) -> None:
    origin.replies["/bad"] = Reply(b"\x1f\x8b\x08\x00" + bytes(range(200)), headers={"Content-Encoding": "gzip"})
    with pytest.raises(CopyError, match="DecodeError"):
        copy(OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=MIB), origin.url("/bad"))
    assert nothing_stored(s3)


def test_an_unencoded_length_over_the_cap_is_refused_before_the_body(s3: Any, origin: Origin) -> None:
    origin.replies["/big"] = Reply(AUDIO)
    with pytest.raises(OutputTooLarge, match="over the"):
        copy(OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=len(AUDIO) - 1), origin.url("/big"))
    assert nothing_stored(s3)


# --- pinned addresses and redirects ----------------------------------------------------------------------------------


def test_the_connection_uses_the_address_resolved_once_and_the_name_in_host(
    s3: Any, origin: Origin, name_lookups: list[str]
) -> None:
    origin.replies["/start"] = Reply(status=302, headers={"Location": origin.url("/final", "outputs.test")})
    origin.replies["/final"] = Reply(AUDIO)
    dns = Dns({"outputs.test": ["127.0.0.1"]}, {"outputs.test": ["127.0.0.2"]})  # rebinding: nobody at .2
    policy = UrlPolicy([origin.origin(), origin.origin("outputs.test")], resolver=dns)
    assert copy(OutputCopier(s3, policy, max_bytes=len(AUDIO)), origin.url("/start")) == len(AUDIO)
    assert stored(s3) == AUDIO
    assert dns.calls == ["outputs.test"]  # the redirect hop resolved once, by the policy
    assert "outputs.test" not in name_lookups  # and the connection never asked the system
    assert [(seen.path, seen.host) for seen in origin.seen] == [
        ("/start", f"127.0.0.1:{origin.port}"),
        ("/final", f"outputs.test:{origin.port}"),
    ]


def test_a_redirect_to_a_host_resolving_privately_is_refused_before_connecting(s3: Any, origin: Origin) -> None:
    origin.replies["/start"] = Reply(status=307, headers={"Location": "https://lalals.s3.amazonaws.com/x.wav"})
    dns = Dns({"lalals.s3.amazonaws.com": ["52.216.1.1", "::ffff:127.0.0.1"]})
    policy = UrlPolicy([origin.origin(), "lalals.s3.amazonaws.com"], resolver=dns)
    with pytest.raises(OutputRefused, match="non-public"):
        copy(OutputCopier(s3, policy, max_bytes=MIB), origin.url("/start"))
    assert [seen.path for seen in origin.seen] == ["/start"]
    assert nothing_stored(s3)


def test_more_than_three_redirects_are_refused(s3: Any, origin: Origin) -> None:
    for hop in range(5):
        origin.replies[f"/{hop}"] = Reply(status=301, headers={"Location": f"/{hop + 1}"})
    with pytest.raises(OutputRefused, match="redirects"):
        copy(OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=MIB), origin.url("/0"))
    assert len(origin.seen) == 4


def test_an_address_nobody_answers_at_is_skipped_for_the_next_checked_one(s3: Any, origin: Origin) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    origin.replies["/f"] = Reply(AUDIO)
    dns = Dns({"outputs.test": ["127.0.0.1"]})
    policy = UrlPolicy([f"http://outputs.test:{dead_port}", origin.origin("outputs.test")], resolver=dns)
    copier = OutputCopier(s3, policy, max_bytes=len(AUDIO))
    with pytest.raises(CopyError, match="cannot connect to outputs.test"):
        copy(copier, f"http://outputs.test:{dead_port}/f")
    policy = UrlPolicy([origin.origin("outputs.test")], resolver=Dns({"outputs.test": ["::1", "127.0.0.1"]}))
    assert copy(OutputCopier(s3, policy, max_bytes=len(AUDIO)), origin.url("/f", "outputs.test")) == len(AUDIO)


# --- TLS: SNI and the certificate use the name, trust comes from ca_bundle -------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="copier test CA")


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@contextmanager
def tls_origin(ca: trustme.CA, *names: str) -> Iterator[Origin]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    with serving(context) as server:
        server.replies["/f.wav"] = Reply(AUDIO)
        yield server


def test_tls_presents_the_name_for_sni_and_the_certificate_while_connecting_to_the_address(
    s3: Any, ca: trustme.CA, ca_bundle: str, name_lookups: list[str]
) -> None:
    with tls_origin(ca, "outputs.test") as server:  # a certificate for the name only, not for 127.0.0.1
        policy = UrlPolicy([server.origin("outputs.test")], resolver=Dns({"outputs.test": ["127.0.0.1"]}))
        copier = OutputCopier(s3, policy, max_bytes=len(AUDIO), ca_bundle=ca_bundle)
        assert copy(copier, server.url("/f.wav", "outputs.test")) == len(AUDIO)
        assert server.sni == ["outputs.test"]
        assert server.seen[0].host == f"outputs.test:{server.port}"
    assert stored(s3) == AUDIO
    assert "outputs.test" not in name_lookups


def test_tls_without_the_ca_bundle_is_not_trusted(s3: Any, ca: trustme.CA) -> None:
    with tls_origin(ca, "outputs.test") as server:
        policy = UrlPolicy([server.origin("outputs.test")], resolver=Dns({"outputs.test": ["127.0.0.1"]}))
        with pytest.raises(CopyError, match="CERTIFICATE_VERIFY_FAILED|SSLCertVerificationError") as caught:
            copy(OutputCopier(s3, policy, max_bytes=len(AUDIO)), server.url("/f.wav", "outputs.test"))
        assert server.seen == []
    assert not isinstance(caught.value, OutputRefused)
    assert nothing_stored(s3)


def test_tls_with_a_certificate_for_another_name_is_refused(s3: Any, ca: trustme.CA, ca_bundle: str) -> None:
    with tls_origin(ca, "other.test", "127.0.0.1") as server:  # valid for the address, not for the name
        policy = UrlPolicy([server.origin("outputs.test")], resolver=Dns({"outputs.test": ["127.0.0.1"]}))
        copier = OutputCopier(s3, policy, max_bytes=len(AUDIO), ca_bundle=ca_bundle)
        with pytest.raises(CopyError, match="not valid for 'outputs.test'"):
            copy(copier, server.url("/f.wav", "outputs.test"))
        assert server.seen == []
    assert nothing_stored(s3)


def test_tls_to_an_explicit_ip_origin_like_the_local_stack(s3: Any, ca: trustme.CA, ca_bundle: str) -> None:
    with tls_origin(ca, "127.0.0.1", "localhost") as server:
        copier = OutputCopier(s3, UrlPolicy([server.origin()]), max_bytes=len(AUDIO), ca_bundle=ca_bundle)
        assert copy(copier, server.url("/f.wav")) == len(AUDIO)
        assert server.sni == [None]  # no SNI for an address
    assert stored(s3) == AUDIO


# --- S3's refusals reach the caller as copy errors -------------------------------------------------------------------


def test_metadata_s3_would_refuse_is_a_copy_error_and_leaves_nothing(s3: Any, origin: Origin) -> None:
    enforce_s3_limits(s3)
    origin.replies["/f"] = Reply(AUDIO)
    copier = OutputCopier(s3, UrlPolicy([origin.origin()]), max_bytes=len(AUDIO))
    with pytest.raises(CopyError, match="MetadataTooLarge"):
        copier.copy(origin.url("/f"), BUCKET, "out.wav", content_type="audio/wav", metadata={"source-key": "k" * 2040})
    with pytest.raises(CopyError, match="KeyTooLongError"):
        copier.copy(origin.url("/f"), BUCKET, "k" * 1025, content_type="audio/wav", metadata={})
    assert nothing_stored(s3)
