"""Example guest in Python: an outbound GET through componentize-py's bindings of
`wasi:http/outgoing-handler`, exporting the world `example:fetch/fetcher` (../fetch/wit). The host
refuses any URL that the function's `grants.http` does not list. Built into a component by
componentize-py (see host.toml)."""

import re
from urllib.parse import urlsplit

import wit_world
from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports.types import (
    Fields,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
    Scheme_Other,
    http_error_code,
)

# The WIT names of wasi:http's error codes spell these words in capitals ("HTTP-request-denied").
ACRONYMS = {"dns", "ip", "tls", "http", "uri"}


def wit_name(error_code) -> str:
    """The WIT case name of a `wasi:http` error-code, from its binding class (`ErrorCode_HttpRequestDenied`)."""
    case = type(error_code).__name__.removeprefix("ErrorCode_")
    words = [w.lower() for w in re.findall(r"[A-Z][a-z]*", case)]
    return "-".join(w.upper() if w in ACRONYMS else w for w in words)


def failed(error_code) -> Err:
    """The `Err` our export fails with for a `wasi:http` error-code: its WIT case name."""
    return Err(wit_name(error_code))


def request(url: str) -> OutgoingRequest:
    """A GET of `url`; a URL the request cannot hold raises `Err("HTTP-request-URI-invalid")`."""
    parts = urlsplit(url)
    schemes = {"http": Scheme_Http(), "https": Scheme_Https()}
    request = OutgoingRequest(Fields())
    try:
        request.set_scheme(schemes.get(parts.scheme) or Scheme_Other(parts.scheme))
        request.set_authority(parts.netloc)
        request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    except Err:
        raise Err("HTTP-request-URI-invalid")
    return request


def get(url: str) -> tuple[int, bytes]:
    """GETs `url`, blocking until the whole body has arrived; a failure raises `Err(message)`."""
    outgoing = request(url)
    try:
        future = outgoing_handler.handle(outgoing, None)
    except Err as error:
        raise failed(error.value)
    future.subscribe().block()
    # Ready now, so `get` answers some(ok(response-or-error-code)) (the outer result is an error
    # only for a response taken already).
    response = future.get().value
    if isinstance(response, Err):
        raise failed(response.value)
    with response.value as response, response.consume() as body, body.stream() as stream:
        data = bytearray()
        while True:
            try:
                data += stream.blocking_read(64 * 1024)
            except Err as error:
                if isinstance(error.value, streams.StreamError_Closed):
                    return response.status(), bytes(data)
                # The body broke off: an error-code when there is one, else the host's words.
                failure = error.value.value
                code = http_error_code(failure)
                raise failed(code) if code is not None else Err(failure.to_debug_string())


class WitWorld(wit_world.WitWorld):
    def fetch_text(self, url: str) -> str:
        status, body = get(url)
        return f"{status} {body.decode()}"
