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


@pytest.mark.parametrize("cls", list(_subclasses(domain.ConnectorError)), ids=lambda c: c.__name__)
def test_every_error_class_has_a_row_in_the_one_table(cls):
    assert cls.kind in domain.ERROR_KINDS


def test_the_kinds_of_one_status_agree_on_makes_error_type():
    from connector.export.make import ERRORS
    for name, kind in domain.ERROR_KINDS.items():
        assert ERRORS[kind.status] == kind.make_type, f"{name}: Make's type for {kind.status} is {ERRORS[kind.status]}"


def test_who_must_act_and_the_watch_status_are_the_tables():
    kinds = domain.ERROR_KINDS
    assert {k for k, v in kinds.items() if v.who == "operator"} == {"not_configured", "auth_failed"}
    assert {k for k, v in kinds.items() if v.watch_status != "error"} == {"provider_key_rejected", "not_found",
                                                                          "not_configured", "auth_failed"}
    assert all(kinds[k].who == "upstream" for k in domain.RETRYABLE_KINDS)
