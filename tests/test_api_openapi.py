"""
The OpenAPI document at ``/api/openapi.json`` is true: schemathesis
generates requests from it, valid and invalid ones, against a live server
and checks that every answer's status, headers, content type and body are
the ones the document promises.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import definitions
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from realtime.api.openapi import buildSpec
from tests.serverprocess import API_KEY, ServerProcess

NAMESPACE = "chat:*:public=true:publish=true:presence=true:history=10"
MAX_BODY = 65536
#: examples per operation and mode: the module takes ~20 s on a quiet 2-core machine
EXAMPLES = 15
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(buildSpec()).get_all_operations()]
#: what every answer is checked for
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
]
#: every operation with valid requests, and those with inputs with invalid ones
CASES = [(op, POSITIVE) for op in OPERATIONS] + [(op, NEGATIVE) for op in OPERATIONS if op.method != "get" or op.query]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """
    A real server with channels and history, so publish answers carry
    offsets, on the default SQLite store, so that backups are served.
    """
    process = ServerProcess(
        "--routing", "channels", "--namespace", NAMESPACE,
        "--max-message-size", str(MAX_BODY),
    ).start()  # fmt: skip
    yield process
    process.stop()


def send(request: urllib.request.Request) -> tuple[int, Any, Any]:
    """
    Send C{request}; its status, headers and decoded JSON body.
    """
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.load(e)


def get(server: ServerProcess, path: str) -> tuple[int, Any]:
    """
    GET C{path} from the API without a key; the status and the JSON body.
    """
    status, _, answer = send(urllib.request.Request(server.apiUrl() + path))
    return status, answer


def test_servedWithoutKey(server: ServerProcess) -> None:
    """
    The document is served without the key, and is the one this module
    tests, with the server's body limit in it.
    """
    status, document = get(server, "/api/openapi.json")
    assert status == 200
    assert document == json.loads(json.dumps(buildSpec(MAX_BODY)))
    assert f"({MAX_BODY} bytes here)" in document["paths"]["/api/push"]["post"]["responses"]["413"]["description"]
    # an API explorer on another origin may load it (the default --api-cors-origin allows any page)
    request = urllib.request.Request(server.apiUrl() + "/api/openapi.json", headers={"Origin": "https://docs.example"})
    status, headers, _ = send(request)
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "https://docs.example")


def test_validDocument() -> None:
    """
    The document is valid OpenAPI 3.1 (the meta-schema schemathesis ships).
    """
    errors = list(definitions.OPENAPI_31_VALIDATOR.iter_errors(json.loads(json.dumps(buildSpec(1024)))))
    assert errors == []


def test_otherEndpointsStillNeedTheKey(server: ServerProcess) -> None:
    """
    Serving the document without a key opens nothing else: every other
    operation answers 401 with the documented challenge.
    """
    for operation in OPERATIONS:
        request = urllib.request.Request(server.apiUrl() + operation.path, method=operation.method.upper())
        status, headers, answer = send(request)
        if operation.path == "/api/openapi.json":
            assert status == 200
            continue
        assert (status, answer["error"]["code"]) == (401, "unauthorized"), operation.label
        assert headers["WWW-Authenticate"].startswith("Bearer"), operation.label
        assert "WWW-Authenticate" in operation.definition.raw["responses"]["401"]["headers"]
    assert get(server, "/api/openapi.json/more")[0] == 404


def test_otherMethods(server: ServerProcess) -> None:
    """
    A method a path does not document is answered 405 with the JSON error
    and an Allow header naming the documented one, as the document says.
    """
    for operation in OPERATIONS:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            if method.lower() == operation.method:
                continue
            request = urllib.request.Request(
                server.apiUrl() + operation.path, method=method, headers={"Authorization": f"Bearer {API_KEY}"}
            )
            status, headers, answer = send(request)
            assert (status, answer["error"]["code"]) == (405, "method_not_allowed"), (method, operation.label)
            assert operation.method.upper() in headers["Allow"], (method, operation.label)


@pytest.mark.parametrize(("operation", "mode"), CASES, ids=lambda value: getattr(value, "label", str(value)))
def test_conforms(server: ServerProcess, operation: Any, mode: schemathesis.GenerationMode) -> None:
    """
    Every generated request gets a documented answer: status, headers,
    content type and body; a valid request is accepted and an invalid body
    refused with a 4xx; nothing is a 500.

    A query parameter the document does not name is ignored, as HTTP APIs
    do, so invalid GET requests are not required to be refused.
    """
    checks = [*CHECKS, negative_data_rejection] if operation.method != "get" else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        case.call_and_validate(base_url=server.apiUrl(), headers=headers, checks=checks)

    check()


def post(server: ServerProcess, path: str, body: bytes) -> tuple[int, Any]:
    """
    POST C{body} to the API with the key; the status and the JSON body.
    """
    headers = {"Authorization": f"Bearer {API_KEY}"}
    status, _, answer = send(urllib.request.Request(server.apiUrl() + path, data=body, headers=headers))
    return status, answer


def test_publishLoneSurrogate(server: ServerProcess) -> None:
    """
    Publishing data with a lone surrogate escape is refused as a push of it
    is (400 invalid_request), not answered 500 with a traceback logged.
    """
    for data in (b'"\\ud800"', b'{"\\udfff": 1}'):
        status, answer = post(server, "/api/publish", b'{"channel": "chat:a", "data": %s}' % data)
        assert (status, answer["error"]["code"]) == (400, "invalid_request"), answer


@pytest.mark.parametrize(
    "path, fields",
    [("/api/push", b'"uid": "u1", '), ("/api/publish", b'"channel": "chat:a", '), ("/api/broadcast", b"")],
)
def test_numberTooLarge(server: ServerProcess, path: str, fields: bytes) -> None:
    """
    A number too large for a double (C{1e999}) is refused as bad JSON: it
    would reach clients as C{Infinity}, which is not JSON.
    """
    status, answer = post(server, path, b'{%s"data": {"n": -1e999}}' % fields)
    assert (status, answer.get("error", {}).get("code")) == (400, "bad_json"), answer
    assert "1e999" in answer["error"]["message"]
