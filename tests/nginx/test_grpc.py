"""gRPC through both kinds, against a real nginx and a real HAProxy: a service labelled
`backend_protocol=grpc` answers a real gRPC client (grpcio) through the proxy's TLS listener,
unary and server-streaming calls, with its metadata and status codes passed through; the proxy
speaks HTTP/2 in clear to the task."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from interlock.model.routing import Routing
from tests.nginx.either_kind import HTTPS, KINDS, Controller, free_port, loopback_routing, serve

pytestmark = pytest.mark.nginx

SERVICE = "interlock.test.Echo"


def _say(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"fail":
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
    context.set_trailing_metadata((("echoed-by", "task"),))
    return b"echo: " + request


def _count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for number in range(int(request)):
        yield str(number).encode()


@pytest.fixture(scope="module")
def grpc_task() -> Iterator[int]:
    """A gRPC server on loopback (plaintext HTTP/2), as a task labelled backend_protocol=grpc."""
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(_say),
        "Count": grpc.unary_stream_rpc_method_handler(_count),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield port
    server.stop(grace=None)


def certificate(directory: Path, name: str) -> bytes:
    """A self-signed certificate for `name` (in its subjectAltName, as gRPC checks), written with
    its key as the secret `name.pem`; returns the certificate PEM for the client to trust."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (directory / f"{name}.pem").write_bytes(cert.read_bytes() + key.read_bytes())
    return cert.read_bytes()


def grpc_routing(port: int) -> Routing:
    labels = {"hosts": "grpc.local", "port": str(port), "backend_protocol": "grpc", "ssl_cert": "grpc.local.pem"}
    return loopback_routing({"echo": labels})


@pytest.fixture(params=KINDS)
async def channel(request: pytest.FixtureRequest, tmp_path: Path, grpc_task: int) -> AsyncIterator[grpc.Channel]:
    """A gRPC channel to grpc.local through a proxy of either kind (its TLS listener)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    trusted = certificate(secrets, "grpc.local")
    binary = request.getfixturevalue(request.param)
    control: Controller = await serve(request.param, binary, grpc_routing(grpc_task), tmp_path, secrets)
    options = (("grpc.ssl_target_name_override", "grpc.local"), ("grpc.default_authority", "grpc.local"))
    credentials = grpc.ssl_channel_credentials(root_certificates=trusted)
    with grpc.secure_channel(f"127.0.0.1:{HTTPS}", credentials, options=options) as opened:
        yield opened
    await control.stop(signal.SIGTERM, timeout=15)


def _identity(data: bytes) -> bytes:
    return data


async def test_unary_and_streaming_calls_reach_the_task_through_the_proxy(channel: grpc.Channel) -> None:
    say = channel.unary_unary(f"/{SERVICE}/Say", request_serializer=_identity, response_deserializer=_identity)
    count = channel.unary_stream(f"/{SERVICE}/Count", request_serializer=_identity, response_deserializer=_identity)

    answer, call = await asyncio.to_thread(say.with_call, b"hello", timeout=10)
    assert answer == b"echo: hello"
    assert ("echoed-by", "task") in call.trailing_metadata(), "trailers pass through the proxy"
    assert await asyncio.to_thread(lambda: list(count(b"5", timeout=10))) == [b"0", b"1", b"2", b"3", b"4"]

    with pytest.raises(grpc.RpcError) as failed:
        await asyncio.to_thread(say, b"fail", timeout=10)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION, "the task's status, not the proxy's"
