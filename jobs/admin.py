"""Staff admin for jobs. Cancel and requeue go through jobs.services; the
fields that workers own are never written from a form."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from callcenter.actor import Actor, Source
from callcenter.admin_kit import AuditTrailInline, GuardedActionsMixin, ReadOnlyAdmin
from callcenter.exceptions import DomainError
from jobs import services
from jobs.models import (
    TERMINAL_STATUSES,
    CallAttempt,
    CallRecord,
    DncEntry,
    DncSource,
    Job,
    JobEvent,
    JobStatus,
)
from jobs.services import REQUEUEABLE_STATUSES

WORKER_OWNED_FIELDS = [
    "status",
    "attempts",
    "claimed_by",
    "claimed_at",
    "lease_expires_at",
    "dialed_at",
    "call_id",
    "started_at",
    "finished_at",
    "result",
    "attempt_log",
    "last_error",
    "cancel_reason",
]
CONFIRMATION_LISTED = 50
# Editable by hand only while no worker holds the job and it is not finished.
HAND_EDITABLE_STATUSES = {JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.SUSPENDED}


class StatusFilter(admin.SimpleListFilter):
    """Status, with the legacy `done` folded into `completed`."""

    title = gettext_lazy("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(s.value, s.label) for s in JobStatus if s != JobStatus.DONE]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.with_status(self.value())
        return queryset


class JobEventInline(AuditTrailInline):
    model = JobEvent
    fk_name = "job"
    readonly_fields = ("when", "action", "source", "actor_label", "what", "reason")
    fields = readonly_fields
    parent_perms = ("jobs.view_job", "jobs.change_job")


ATTEMPT_COLUMNS = [
    ("attempt", gettext_lazy("attempt")),
    ("dialer", gettext_lazy("dialer")),
    ("provider_call_id", gettext_lazy("provider call id")),
    ("provider_status", gettext_lazy("provider status")),
    ("answered_by", gettext_lazy("answered by")),
    ("started_at", gettext_lazy("started at")),
    ("answered_at", gettext_lazy("answered at")),
    ("ended_at", gettext_lazy("ended at")),
    ("duration_seconds", gettext_lazy("duration seconds")),
    ("outcome", gettext_lazy("outcome")),
    ("cost", gettext_lazy("cost")),
    ("hangup_reason", gettext_lazy("hang-up reason")),
    ("error", gettext_lazy("error")),
]


@admin.register(Job)
class JobAdmin(GuardedActionsMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "phone_number",
        "batch",
        "account",
        "status",
        "attempts",
        "claimed_by",
        "scheduled_at",
        "updated_at",
    ]
    list_filter = [StatusFilter, "batch", "account"]
    search_fields = ["=phone_number"]
    list_select_related = ["batch", "account"]
    # An exact count of a multi-million-row table on every page is not worth it.
    show_full_result_count = False
    actions = ["cancel_selected", "requeue_selected"]
    inlines = [JobEventInline]
    fields = [
        "account",
        "batch",
        "phone_number",
        "variables",
        "priority",
        "scheduled_at",
        "max_attempts",
        *WORKER_OWNED_FIELDS,
        "call_attempts",
        "explanation",
        "consent_at",
        "stop_code",
        "created_at",
        "updated_at",
    ]

    @admin.display(description=gettext_lazy("why (explain)"))
    def explanation(self, obj: Job) -> str:
        """What GET /jobs/{id}/explain answers, for staff."""
        from jobs.explain import explain

        if obj.pk is None:
            return "-"
        answer = explain(obj)
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li><code>{}</code> {}{}</li>",
                (
                    (
                        r["code"],
                        r["detail"],
                        f" (until {r['until']})" if r["until"] else "",
                    )
                    for r in answer["reasons"]
                ),
            ),
        )

    @admin.display(description=gettext_lazy("call attempts"))
    def call_attempts(self, obj: Job) -> str:
        """The job's attempts, read-only: the dialers and providers write them."""
        rows = list(CallAttempt.objects.filter(job_id=obj.pk).order_by("attempt", "id"))
        if not rows:
            return "-"
        head = format_html_join(
            "", "<th>{}</th>", ((label,) for _name, label in ATTEMPT_COLUMNS)
        )
        body = format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (
                    format_html_join(
                        "",
                        "<td>{}</td>",
                        (
                            ("" if getattr(row, name) is None else getattr(row, name),)
                            for name, _label in ATTEMPT_COLUMNS
                        ),
                    ),
                )
                for row in rows
            ),
        )
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body
        )

    def get_search_results(self, request, queryset, search_term):
        # Phone numbers are stored in E.164; let staff type them with spaces.
        return super().get_search_results(
            request, queryset, "".join(search_term.split())
        )

    def get_readonly_fields(self, request, obj=None):
        readonly = [
            "account",
            "batch",
            *WORKER_OWNED_FIELDS,
            "call_attempts",
            "explanation",
            # Consent changes go through the API's audited service.
            "consent_at",
            "stop_code",
            "created_at",
            "updated_at",
        ]
        if obj is not None and obj.status not in HAND_EDITABLE_STATUSES:
            readonly += ["phone_number", "variables", "priority", "scheduled_at"]
            readonly += ["max_attempts"]
        return readonly

    def has_add_permission(self, request) -> bool:
        # Jobs come in through the API, which validates, deduplicates and
        # wakes the workers.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # History is kept; a batch delete with "also delete jobs" removes rows.
        return False

    def save_model(self, request, obj, form, change):
        # Write only what the form changed: a full save would put back the
        # status the page was loaded with, over a claim made since.
        if form.changed_data:
            obj.save(update_fields=[*form.changed_data, "updated_at"])

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(
        description=gettext_lazy("Cancel selected jobs…"), permissions=["change"]
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]):
        jobs = list(queryset.select_related("batch"))
        if request.POST.get("post") != "yes":
            cancellable = [j for j in jobs if j.status not in TERMINAL_STATUSES]
            context = {
                **self.admin_site.each_context(request),
                "title": _("Cancel jobs: are you sure?"),
                "opts": self.opts,
                "jobs": cancellable[:CONFIRMATION_LISTED],
                "more": max(0, len(cancellable) - CONFIRMATION_LISTED),
                "to_cancel": len(cancellable),
                "finished": len(jobs) - len(cancellable),
                "selected": [j.pk for j in jobs],
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "action": request.POST.get("action", ""),
            }
            return TemplateResponse(
                request, "admin/jobs/job/cancel_confirmation.html", context
            )
        actor = Actor.from_request(request, Source.ADMIN)
        changed = skipped = 0
        errors = []
        for job in jobs:
            if job.status in TERMINAL_STATUSES:
                skipped += 1
                continue
            try:
                services.job_cancel(job=job, actor=actor)
                changed += 1
            except services.JobNotCancellableError:
                skipped += 1  # finished between the page load and now
            except DomainError as exc:
                errors.append(exc.message)
        self.report_outcome(
            request,
            changed=changed,
            done=ngettext(
                "%(count)d job cancelled", "%(count)d jobs cancelled", changed
            ),
            none=_("No jobs cancelled"),
            skipped=skipped,
            skipped_as=ngettext(
                "%(count)d was already finished",
                "%(count)d were already finished",
                skipped,
            ),
            errors=errors,
        )
        return None

    @admin.action(
        description=gettext_lazy("Requeue selected failed or suspended jobs"),
        permissions=["change"],
    )
    def requeue_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        actor = Actor.from_request(request, Source.ADMIN)
        changed = skipped = 0
        errors = []
        for job in queryset:
            if job.status not in REQUEUEABLE_STATUSES:
                skipped += 1
                continue
            try:
                services.job_requeue(job=job, actor=actor)
                changed += 1
            except DomainError as exc:
                errors.append(exc.message)
        self.report_outcome(
            request,
            changed=changed,
            done=ngettext("%(count)d job requeued", "%(count)d jobs requeued", changed),
            none=_("No jobs requeued"),
            skipped=skipped,
            skipped_as=ngettext(
                "%(count)d was not failed or suspended",
                "%(count)d were not failed or suspended",
                skipped,
            ),
            errors=errors,
        )


@admin.register(JobEvent)
class JobEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "job_pk", "action", "source", "actor_label", "reason"]
    list_filter = ["action", "source"]
    search_fields = ["=job_pk", "actor_label"]
    date_hierarchy = "created_at"


@admin.register(CallRecord)
class CallRecordAdmin(ReadOnlyAdmin):
    """The calls of deleted jobs: history, read-only. Only the
    purge_call_records command removes them."""

    list_display = [
        "last_call_at",
        "phone_number",
        "account",
        "batch_public_id",
        "job_pk",
        "attempts",
        "last_outcome",
        "duration_seconds",
        "cost",
        "deleted_because",
    ]
    list_filter = ["last_outcome", "deleted_because"]
    search_fields = ["phone_number", "batch_public_id", "=job_pk"]
    list_select_related = ["account"]
    date_hierarchy = "last_call_at"


class DncEntryForm(forms.ModelForm):
    class Meta:
        model = DncEntry
        fields = ["account", "phone_number", "note"]

    def clean_phone_number(self) -> str:
        from jobs.dnc import normalize

        e164 = normalize(self.cleaned_data["phone_number"])
        if e164 is None:
            raise forms.ValidationError(_("Not a valid phone number."))
        return e164

    def validate_unique(self) -> None:
        # A number already listed is left as it is (dnc_add ignores it).
        pass


@admin.register(DncEntry)
class DncEntryAdmin(admin.ModelAdmin):
    """Both do-not-call lists: an account's (account set) and the system-wide
    one (no account). Added and removed through jobs/dnc.py, audited."""

    form = DncEntryForm
    list_display = ["phone_number", "list_name", "source", "added_by", "created_at"]
    list_filter = [("account", admin.EmptyFieldListFilter), "source", "account"]
    search_fields = ["=phone_number"]
    list_select_related = ["account", "added_by"]
    show_full_result_count = False

    @admin.display(description=gettext_lazy("list"))
    def list_name(self, obj: DncEntry) -> str:
        return str(obj.account) if obj.account_id else _("system-wide")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ["account", "phone_number", "source", "note", "job_pk"]
        return []

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(
            request, queryset, "".join(search_term.split())
        )

    def save_model(self, request, obj, form, change):
        from jobs.dnc import dnc_add

        if change:
            return
        actor = Actor.from_request(request, Source.ADMIN)
        dnc_add(
            account=form.cleaned_data["account"],
            numbers=[form.cleaned_data["phone_number"]],
            actor=actor,
            source=DncSource.ADMIN,
            note=form.cleaned_data.get("note") or "",
        )
        saved = DncEntry.objects.get(
            account=form.cleaned_data["account"],
            phone_number=form.cleaned_data["phone_number"],
        )
        obj.pk = saved.pk
        obj._state.adding = False

    def delete_model(self, request, obj):
        self.delete_queryset(request, DncEntry.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        from jobs.dnc import dnc_remove

        actor = Actor.from_request(request, Source.ADMIN)
        for entry in queryset.select_related("account"):
            if entry.account is not None:
                dnc_remove(
                    account=entry.account,
                    phone_number=entry.phone_number,
                    actor=actor,
                )
            else:  # the system list: the admin's own log records it
                entry.delete()
