"""The one status table covers the whole error tree: a new error class or upstream kind
without an HTTP status would otherwise surface as a bare 500 the first time it is raised."""

from __future__ import annotations

import pytest

from connector import errors as domain
from connector.api import errors as edge


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_upstream_kind_has_a_status_and_no_status_names_an_unknown_kind():
    assert set(edge.UPSTREAM_STATUS) == set(domain.UPSTREAM_KINDS)


def test_retryable_kinds_are_upstream_kinds():
    assert domain.RETRYABLE_KINDS <= set(domain.UPSTREAM_KINDS)


@pytest.mark.parametrize("cls", [c for c in _subclasses(domain.ConnectorError) if c is not domain.UpstreamError],
                         ids=lambda c: c.__name__)
def test_every_domain_error_maps_to_a_4xx(cls):
    status = next((edge.STATUS[k] for k in cls.__mro__ if k in edge.STATUS), None)
    assert status is not None and 400 <= status < 500, f"{cls.__name__} has no status in api/errors.STATUS"


@pytest.mark.parametrize("kind", domain.UPSTREAM_KINDS)
def test_every_upstream_kind_answers_with_its_status_and_a_message(kind):
    exc = domain.UpstreamError(kind, "internal detail, never shown", retry_after=7)
    exc.message = "Something went wrong upstream."   # as api.common.upstream_failure words it
    body, status, headers = edge.answer(exc)
    assert status == edge.UPSTREAM_STATUS[kind]
    assert body == {"error": "Something went wrong upstream."}
    assert ("Retry-After" in headers) == (kind == "rate_limited")
