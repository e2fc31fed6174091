from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext_lazy, ngettext

from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_delivery_retry


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = [
        "url",
        "account",
        "is_active",
        "event_list",
        "created_at",
        "deleted_at",
    ]
    list_filter = ["is_active", "account"]
    search_fields = ["url", "account__name", "description"]
    autocomplete_fields = ["account"]
    # The signing secrets are the account's: shown to it once, never here.
    exclude = ["secret", "previous_secret"]
    readonly_fields = [
        "previous_secret_expires_at",
        "created_at",
        "updated_at",
        "deleted_at",
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Its deliveries are history and keep the row (PROTECT); staff turn an
        # endpoint off with is_active, its account deletes it through the API.
        return False

    @admin.display(description=gettext_lazy("Events"))
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types or [])


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "number",
        "created_at",
        "status_code",
        "error",
        "duration_ms",
        "response_excerpt",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Read-only: deliveries are history. The one thing staff may do is ask
    for another attempt."""

    list_display = [
        "delivery_id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event"]
    search_fields = ["delivery_id", "endpoint__url"]
    date_hierarchy = "created_at"
    inlines = [WebhookAttemptInline]
    actions = ["retry_now"]
    readonly_fields = [
        "delivery_id",
        "endpoint",
        "event",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "response_excerpt",
        "delivered_at",
        "created_at",
        "updated_at",
        "payload",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Deliveries are read-only in the admin (has_change_permission is
        # False); the model's change permission is what allows a retry.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(
        description=gettext_lazy("Attempt the selected deliveries again now"),
        permissions=["retry"],
    )
    def retry_now(self, request: HttpRequest, queryset: Any) -> None:
        retried = sum(
            webhook_delivery_retry(delivery=d) for d in queryset.order_by("pk")
        )
        self.message_user(
            request,
            ngettext(
                "%(count)d delivery queued for another attempt.",
                "%(count)d deliveries queued for another attempt.",
                retried,
            )
            % {"count": retried},
            messages.SUCCESS,
        )
