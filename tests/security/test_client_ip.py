from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings

from tollgate.security.client_ip import client_ip
from tollgate.security.ratelimit import ip_subject

rf = RequestFactory()


def request_from(remote: str, forwarded: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return rf.get("/", REMOTE_ADDR=remote, **extra)


@override_settings(TRUSTED_PROXIES=0)
def test_forwarded_for_is_ignored_without_trusted_proxies():
    assert client_ip(request_from("10.0.0.2", "203.0.113.9")) == "10.0.0.2"


@override_settings(TRUSTED_PROXIES=1)
def test_one_trusted_proxy_means_the_address_it_saw():
    assert client_ip(request_from("10.0.0.2", "203.0.113.9")) == "203.0.113.9"


@override_settings(TRUSTED_PROXIES=1)
def test_addresses_the_client_prepends_are_not_trusted():
    assert client_ip(request_from("10.0.0.2", "6.6.6.6, 203.0.113.9")) == "203.0.113.9"


@override_settings(TRUSTED_PROXIES=2)
def test_two_trusted_proxies_mean_the_address_the_outer_one_saw():
    assert client_ip(request_from("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.1")) == "203.0.113.9"


@override_settings(TRUSTED_PROXIES=2)
def test_fewer_forwarded_entries_than_proxies_falls_back_to_the_peer():
    assert client_ip(request_from("10.0.0.2", "203.0.113.9")) == "10.0.0.2"


@override_settings(TRUSTED_PROXIES=1)
@pytest.mark.parametrize("forwarded", ["not-an-ip", "", " , "])
def test_a_malformed_forwarded_entry_falls_back_to_the_peer(forwarded):
    assert client_ip(request_from("10.0.0.2", forwarded)) == "10.0.0.2"


@override_settings(TRUSTED_PROXIES=1)
def test_ipv6_forwarded_addresses_are_normalised():
    assert client_ip(request_from("10.0.0.2", "2001:DB8:0:0::1")) == "2001:db8::1"


def test_ipv4_addresses_are_counted_one_by_one():
    assert ip_subject("203.0.113.9") == "ip:203.0.113.9"
    assert ip_subject("203.0.113.9") != ip_subject("203.0.113.10")


def test_ipv6_addresses_are_counted_per_64_block():
    assert ip_subject("2001:db8:1:2::1") == ip_subject("2001:db8:1:2:ffff::9")
    assert ip_subject("2001:db8:1:2::1") == "ip:2001:db8:1:2::/64"
    assert ip_subject("2001:db8:1:2::1") != ip_subject("2001:db8:1:3::1")


def test_ipv4_mapped_ipv6_addresses_count_as_the_ipv4_address():
    assert ip_subject("::ffff:203.0.113.9") == ip_subject("203.0.113.9")
