from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.credits import credits_add
from accounts.forms import DIALING_RULES, AccountAdminForm, AddCreditsForm
from accounts.models import Account, AccountEvent, ApiToken, CreditEntry, Membership
from accounts.services import account_create, account_set_dialing_rules
from callcenter.actor import Actor, Source


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountAdminForm
    list_display = ["name", "slug", "credits", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    actions = ["add_credits"]

    # The balance changes only through the credit services (ledger, resume of
    # auto-paused batches), never by typing a number: not when editing, and
    # not when adding, where a typed balance would have no ledger entry. A
    # new account starts at 0; the "Add credits" action books the first top-up.
    readonly_fields = ["credits", "rules_history"]

    @admin.display(description=gettext_lazy("Dialing rules history"))
    def rules_history(self, obj: Account) -> str:
        """The audit of the rules (AccountEvent), newest first; a read-only
        field rather than an inline, so the forms post no formset for it."""
        if obj.pk is None:
            return "-"
        events = obj.events.filter(
            action=AccountEvent.Action.DIALING_RULES_CHANGED
        ).order_by("-created_at", "-id")[:20]
        return (
            format_html_join(
                "",
                "<div>{}: {} by {} ({}): {}</div>",
                (
                    (
                        e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        e.get_action_display(),
                        e.actor_label or "-",
                        e.source,
                        "; ".join(
                            f"{name} {before} -> {after}"
                            for name, (before, after) in e.changes.items()
                        ),
                    )
                    for e in events
                ),
            )
            or "-"
        )

    def save_model(
        self, request: HttpRequest, obj: Account, form: Any, change: bool
    ) -> None:
        """A new account goes through the service, so it is audited like one
        made by create_account or the API; the dialing rules change only
        through theirs (validated, audited)."""
        actor = Actor.from_request(request, Source.ADMIN)
        if change:
            wanted = {name: form.cleaned_data[name] for name in DIALING_RULES}
            stored = Account.objects.values(*DIALING_RULES).get(pk=obj.pk)
            for name in DIALING_RULES:
                setattr(obj, name, stored[name])
            super().save_model(request, obj, form, change)
            account_set_dialing_rules(account=obj, actor=actor, **wanted)
        else:
            # A new account starts with the default rules (the add page does
            # not show them); staff change them on the account's page.
            created = account_create(slug=obj.slug, name=obj.name, actor=actor).account
            obj.pk = created.pk
            obj.refresh_from_db()
            obj._state.adding = False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)
        if obj is None:
            return [f for f in fields if f not in DIALING_RULES]
        return fields

    def has_add_credits_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and (
            request.user.is_superuser or request.user.has_perm("accounts.add_credits")
        )

    @admin.action(
        description=gettext_lazy("Add credits to the selected accounts"),
        permissions=["add_credits"],
    )
    def add_credits(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        """An intermediate form (amount, note), as delete_selected confirms
        first; then one credits_add per account."""
        form = AddCreditsForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            actor = Actor.from_request(request, Source.ADMIN)
            for account in queryset.order_by("pk"):
                result = credits_add(
                    account=account,
                    amount=form.cleaned_data["amount"],
                    actor=actor,
                    note=form.cleaned_data["note"],
                )
                resumed = len(result.resumed_batches)
                self.message_user(
                    request,
                    _(
                        "%(account)s: added %(amount)s credits, balance %(balance)s; "
                        "%(resumed)s batch(es) resumed, %(jobs)s job(s) back in the "
                        "queue."
                    )
                    % {
                        "account": account,
                        "amount": f"{form.cleaned_data['amount']:,}",
                        "balance": f"{result.balance:,}",
                        "resumed": resumed,
                        "jobs": f"{result.unsuspended_jobs:,}",
                    },
                    messages.SUCCESS,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Add credits"),
            "accounts": list(queryset),
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action": "add_credits",
        }
        return TemplateResponse(request, "admin/accounts/add_credits.html", context)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "account", "role", "created_at"]
    list_filter = ["role", "account"]
    search_fields = ["user__username", "account__name"]
    autocomplete_fields = ["user", "account"]


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    """The ledger is history: read only."""

    list_display = [
        "created_at",
        "account",
        "kind",
        "amount",
        "balance_after",
        "job_pk",
        "source",
        "actor_label",
        "note",
    ]
    list_filter = ["kind", "source", "account"]
    search_fields = ["account__name", "account__slug", "note", "=job_pk"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Which users have a key, recognisable by its prefix. Keys are made by
    ``create_api_token`` and shown only then; here they can only be revoked
    (deleted)."""

    list_display = ["prefix", "user", "created_at"]
    search_fields = ["user__username", "prefix"]
    readonly_fields = ["user", "prefix", "created_at"]
    exclude = ["key_hash"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AccountEvent)
class AccountEventAdmin(admin.ModelAdmin):
    """Who created which account, from where: read only."""

    list_display = [
        "created_at",
        "account_slug",
        "action",
        "source",
        "actor_label",
        "remote_addr",
    ]
    list_filter = ["action", "source"]
    search_fields = ["account_slug", "actor_label"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
