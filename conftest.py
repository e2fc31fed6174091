from __future__ import annotations

import pytest

from accounts.actor import Actor, Source
from accounts.tests.factories import AccountFactory, MembershipFactory, UserFactory


@pytest.fixture
def account():
    return AccountFactory()


@pytest.fixture
def member(account):
    return MembershipFactory(account=account).user


@pytest.fixture
def api_actor(member):
    return Actor(source=Source.API, user=member, remote_addr="127.0.0.1")


@pytest.fixture
def system_actor():
    return Actor.system("tests")


@pytest.fixture
def staff_user():
    return UserFactory(username="staff", is_staff=True, is_superuser=True)
