"""Schemathesis over the service's OpenAPI document, against a live server, as an admin.

Every operation of the document (the /v1 API, OpenLineage ingest, health routes and the
Confluent schema registry API) gets generated requests; the run asserts no 5xx and that every
response conforms to the document (status codes, content types, headers, body schemas).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from headwater.service import ServiceConfig
from tests.service.conftest import open_platform, serve

EXAMPLES = 30
# Arbitrary schema-valid SQL is rightly refused (400), so "positive data acceptance" does not
# apply; these are the checks the service promises.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    platform = open_platform(tmp_path_factory.mktemp("fuzz") / "hw")
    token = platform.create_api_key("alice").token
    with serve(platform, ServiceConfig(rate_enabled=False)) as server:
        yield server.base_url, token
    platform.close()


def test_schemathesis_no_server_errors_no_schema_violations(live: tuple[str, str]) -> None:
    base_url, token = live
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30  # the /v1 API, OpenLineage ingest, health and the schema registry
    headers = {"X-API-Key": token}
    failures: list[str] = []

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as err:  # noqa: BLE001 - report every operation's failure
            failures.append(f"{operation.label}: {str(err)[:2000]}")
    assert not failures, "\n\n".join(failures)

