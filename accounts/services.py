"""Account services: creating an account, and its dialing rules.

Credits (the price rule, the ledger, running out and topping up) are their own
module, ``accounts.credits``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils.translation import gettext

from accounts.credits import InvalidCreditAmountError, credits_add
from accounts.dialing import (
    NON_GEOGRAPHIC,
    parse_holidays,
    unknown_countries,
    unknown_number_types,
)
from accounts.models import Account, AccountEvent
from callcenter.actor import Actor
from callcenter.exceptions import DomainError

logger = logging.getLogger(__name__)


# --- Dialing rules ------------------------------------------------------------


class InvalidDialingRulesError(DomainError):
    code = "invalid_dialing_rules"
    status_code = 400


# "Leave this setting as it is", where None is a value (no cap).
UNCHANGED: Any = object()


def account_set_dialing_rules(
    *,
    account: Account,
    actor: Actor,
    allowed_number_types: list[str] | None = None,
    allowed_countries: list[str] | None = None,
    holidays: list[str] | None = None,
    max_calls_per_number_per_24h: int | None = None,
    max_concurrent_calls: int | object | None = UNCHANGED,
) -> list[str]:
    """Change which number types and countries an account may call, and its
    caps (staff only: the admin is the one interface that calls this).
    Returns the names of the fields that changed; a change is audited as an
    AccountEvent.

    A change applies to jobs already queued: the worker checks the rules
    again in the transaction that marks each job dialled (jobs/rules/), and
    the caps in the claim and the dial mark (jobs/caps.py).
    ``max_concurrent_calls`` None means no cap; leave it out to keep it.
    """
    wanted: dict[str, Any] = {}
    if max_calls_per_number_per_24h is not None:
        if (
            isinstance(max_calls_per_number_per_24h, bool)
            or not isinstance(max_calls_per_number_per_24h, int)
            or max_calls_per_number_per_24h < 1
        ):
            raise InvalidDialingRulesError(
                "max_calls_per_number_per_24h: a whole number of at least 1."
            )
        wanted["max_calls_per_number_per_24h"] = max_calls_per_number_per_24h
    if max_concurrent_calls is not UNCHANGED:
        if max_concurrent_calls is not None and (
            isinstance(max_concurrent_calls, bool)
            or not isinstance(max_concurrent_calls, int)
            or max_concurrent_calls < 0
        ):
            raise InvalidDialingRulesError(
                "max_concurrent_calls: a whole number of at least 0, or empty."
            )
        wanted["max_concurrent_calls"] = max_concurrent_calls
    if allowed_number_types is not None:
        unknown = unknown_number_types(allowed_number_types)
        if unknown:
            raise InvalidDialingRulesError(
                f"Unknown number types: {', '.join(unknown)}."
            )
        wanted["allowed_number_types"] = sorted(set(allowed_number_types))
    if allowed_countries is not None:
        codes = sorted({code.strip().upper() for code in allowed_countries})
        unknown = unknown_countries(codes)
        if unknown:
            raise InvalidDialingRulesError(
                f"Unknown country codes: {', '.join(unknown)} (use ISO 3166 "
                f"alpha-2 codes such as US or GB, or {NON_GEOGRAPHIC})."
            )
        wanted["allowed_countries"] = codes
    if holidays is not None:
        try:
            wanted["holidays"] = parse_holidays(holidays)
        except ValueError as error:
            raise InvalidDialingRulesError(str(error)) from None
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        changes = {
            name: [getattr(locked, name), value]
            for name, value in wanted.items()
            if (
                sorted(getattr(locked, name))
                if isinstance(value, list)
                else getattr(locked, name)
            )
            != value
        }
        if not changes:
            return []
        for name, (_before, after) in changes.items():
            setattr(locked, name, after)
            setattr(account, name, after)
        locked.save(update_fields=[*changes, "updated_at"])
        event = AccountEvent.objects.create(
            account=locked,
            account_slug=locked.slug,
            action=AccountEvent.Action.DIALING_RULES_CHANGED,
            **actor.audit_fields(),
            changes=changes,
        )
    logger.info(
        "account dialing rules changed",
        extra={
            "action": "account.dialing_rules_changed",
            "account": locked.slug,
            "changes": changes,
            "source": actor.source,
            "actor": event.actor_label or "-",
        },
    )
    return list(changes)


# --- Accounts -------------------------------------------------------------------


class AccountExistsError(DomainError):
    code = "account_exists"
    status_code = 409


def unknown_account_message(slug: str) -> str:
    """What every interface says about a slug that names no account, in the
    request's or command's language."""
    return gettext(
        "No account '%(slug)s'. Create it with: "
        'python manage.py create_account %(slug)s --name "…"'
    ) % {"slug": slug}


@dataclass(frozen=True)
class AccountCreated:
    account: Account
    created: bool


def account_create(
    *,
    slug: str,
    name: str,
    actor: Actor,
    credits: int = 0,
    exist_ok: bool = False,
) -> AccountCreated:
    """Create an account, audited; initial credits go through ``credits_add``
    and so leave a ledger entry.

    An existing slug is an ``AccountExistsError``, or with ``exist_ok`` the
    existing account, unchanged: running it twice never adds credits twice.
    """
    from accounts.models import AccountEvent

    if not isinstance(credits, int) or isinstance(credits, bool) or credits < 0:
        raise InvalidCreditAmountError("Initial credits must be a whole number >= 0.")
    with transaction.atomic():
        account, created = Account.objects.get_or_create(
            slug=slug, defaults={"name": name, "credits": 0}
        )
        if not created:
            if exist_ok:
                return AccountCreated(account=account, created=False)
            raise AccountExistsError(f"An account {slug!r} already exists.")
        AccountEvent.objects.create(
            account=account,
            account_slug=slug,
            action=AccountEvent.Action.CREATED,
            changes={"name": name, "credits": credits},
            **actor.audit_fields(),
        )
        if credits:
            credits_add(
                account=account,
                amount=credits,
                actor=actor,
                note="initial credits",
                restore_jobs=False,
            )
    logger.info(
        "account created",
        extra={
            "action": "account.created",
            "account_id": account.pk,
            "slug": slug,
            "credits": credits,
            "source": actor.source,
        },
    )
    return AccountCreated(account=account, created=True)
