"""The admin's login view, with a limit on failed attempts.

Failures are counted in the shared cache (settings.CACHES, the database by
default), so the limit holds across web processes and hosts:

* per username, from any address (ADMIN_LOGIN_MAX_FAILURES): password
  guessing against one staff account, however many addresses it comes from;
* per client address, any username (ADMIN_LOGIN_MAX_FAILURES_PER_IP): one
  address spraying many usernames.

Each counter is a fixed window of ADMIN_LOGIN_WINDOW_SECONDS that starts at
its first failure. Over a limit, the login is refused with 429 before the
password is even checked, so a right guess inside the window is useless. A
successful login clears its username's counter. The price: someone who knows
a staff username can lock that user out of the admin for one window; the
counters can be cleared from a shell (``cache.delete_many``) or by waiting.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

logger = logging.getLogger(__name__)

_PREFIX = "admin-login-failures"


def _counters(request: HttpRequest) -> list[tuple[str, int]]:
    """(cache key, limit) of every counter this attempt belongs to."""
    counters = []
    address = request.META.get("REMOTE_ADDR") or "unknown"
    if settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP:
        counters.append(
            (f"{_PREFIX}:ip:{address}", settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP)
        )
    username = request.POST.get("username", "").strip().lower()
    if username and settings.ADMIN_LOGIN_MAX_FAILURES:
        # Hashed: a cache key must be short and of safe characters.
        digest = hashlib.sha256(username.encode()).hexdigest()[:32]
        counters.append((f"{_PREFIX}:user:{digest}", settings.ADMIN_LOGIN_MAX_FAILURES))
    return counters


def _count_failure(counters: list[tuple[str, int]]) -> None:
    window = settings.ADMIN_LOGIN_WINDOW_SECONDS
    for key, _limit in counters:
        # add() starts the window only if it is not running; incr() may lose
        # a count to a concurrent failure on some backends, which an
        # approximate limit can afford.
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)


def _refused(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "app_path": request.get_full_path(),
        "form": AdminAuthenticationForm(request),
        "window_minutes": max(1, settings.ADMIN_LOGIN_WINDOW_SECONDS // 60),
    }
    return TemplateResponse(
        request,
        "admin/login_limited.html",
        context,
        status=429,
        headers={"Retry-After": str(settings.ADMIN_LOGIN_WINDOW_SECONDS)},
    )


def _failed(response: Any) -> bool:
    """The admin's LoginView answers a failed POST with its form, bound and
    with errors; a success is a redirect."""
    form = (getattr(response, "context_data", None) or {}).get("form")
    return bool(form is not None and form.is_bound and form.errors)


@never_cache
@csrf_protect
def admin_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    if request.method != "POST":
        return admin.site.login(request, extra_context)
    counters = _counters(request)
    over = [key for key, limit in counters if (cache.get(key) or 0) >= limit]
    if over:
        logger.warning(
            "admin login refused: too many failures",
            extra={
                "action": "admin.login_limited",
                "remote_addr": request.META.get("REMOTE_ADDR"),
                "counters": [key.split(":")[1] for key in over],
            },
        )
        return _refused(request)
    response = admin.site.login(request, extra_context)
    if _failed(response):
        _count_failure(counters)
    else:
        cache.delete_many([key for key, _ in counters if ":user:" in key])
    return response
