"""Staff admin for batches. Every transition goes through batches.services,
with an admin ``Actor``, so it means what it means in the API and is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from batches import charts, operations, services
from batches.models import Batch, BatchEvent, Operation
from batches.report import batch_report, outcome_names
from batches.selectors import REPORTED_STATUSES, batch_status_counts, counts_summary
from callcenter.actor import Actor, Source
from callcenter.admin_kit import (
    AuditTrailInline,
    GuardedActionsMixin,
    ReadOnlyAdmin,
)
from callcenter.exceptions import DomainError
from jobs import export
from jobs.breaker import BreakerError, validate_breaker
from jobs.models import CANCELLABLE_STATUSES, JobStatus

STATUS_LABELS = {s.value: s.label for s in JobStatus}


def admin_actor(request: HttpRequest) -> Actor:
    return Actor.from_request(request, Source.ADMIN)


def cancellable_count(counts: dict[str, int]) -> int:
    return sum(n for status, n in counts.items() if status in CANCELLABLE_STATUSES)


def counts_tooltip(counts: dict[str, int]) -> str:
    parts = [f"{STATUS_LABELS[s]}: {n}" for s, n in counts.items() if n]
    return " · ".join(parts) or "No jobs"


def _hour(value: datetime) -> str:
    return date_format(localtime(value), "m-d H:00")


def render_report(r: dict[str, Any]) -> str:
    """The batch report (batches.report) as HTML with SVG charts."""
    names = outcome_names(r)
    over_time = r["outcomes_over_time"]
    outcomes_chart = charts.stacked_bars(
        [_hour(row["hour"]) for row in over_time],
        {n: [row["outcomes"].get(n, 0) for row in over_time] for n in names},
        title=_("Outcomes over time (jobs finished per hour)"),
        css_class="cc-chart-outcomes",
    )
    per_hour = r["calls_per_hour"]
    calls_chart = charts.stacked_bars(
        [_hour(row["hour"]) for row in per_hour],
        {
            _("answered"): [row["answered"] for row in per_hour],
            _("not answered"): [row["calls"] - row["answered"] for row in per_hour],
        },
        title=_("Calls per hour"),
        css_class="cc-chart-calls",
    )
    distribution = r["attempts_per_contact"]["distribution"]
    attempts_chart = charts.stacked_bars(
        [_("%(n)s attempts") % {"n": k} for k in distribution],
        {_("contacts"): list(distribution.values())},
        title=_("Attempts per contact"),
        css_class="cc-chart-attempts",
    )
    return render_to_string(
        "admin/batches/batch/_report.html",
        {
            "r": r,
            "answer_percent": round(r["answer_rate"] * 100, 1)
            if r["answer_rate"] is not None
            else None,
            "rate": round(r["rate_per_hour"], 1),
            "outcomes_chart": outcomes_chart,
            "calls_chart": calls_chart,
            "attempts_chart": attempts_chart,
        },
    )


class StateFilter(admin.SimpleListFilter):
    title = gettext_lazy("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            (s.value, s.label)
            for s in (
                Batch.State.ACTIVE,
                Batch.State.PAUSED,
                Batch.State.CANCELLED,
                Batch.State.COMPLETED,
            )
        ]

    def queryset(self, request, queryset):
        # The same precedence as Batch.state: cancelled, completed, then the flag.
        value = self.value()
        if value == Batch.State.CANCELLED:
            return queryset.filter(cancelled_at__isnull=False)
        if value == Batch.State.COMPLETED:
            return queryset.filter(
                cancelled_at__isnull=True, completed_at__isnull=False
            )
        if value == Batch.State.ACTIVE:
            return queryset.filter(
                is_active=True, cancelled_at__isnull=True, completed_at__isnull=True
            )
        if value == Batch.State.PAUSED:
            return queryset.filter(
                is_active=False, cancelled_at__isnull=True, completed_at__isnull=True
            )
        return queryset


class BatchChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # One query for the whole page, whatever its size.
        counts = batch_status_counts(batch.pk for batch in self.result_list)
        for batch in self.result_list:
            batch.status_counts = counts[batch.pk]  # type: ignore[attr-defined]


class BatchEventInline(AuditTrailInline):
    """The audit trail, read-only, newest first."""

    model = BatchEvent
    fk_name = "batch"
    show_change_link = False
    readonly_fields = (
        "when",
        "action",
        "source",
        "who",
        "remote_addr",
        "what",
        "reason",
    )
    # State, done, total and the counts are in the progress block, live.
    fields = list(readonly_fields)  # type: ignore[assignment]
    verbose_name = gettext_lazy("audit event")
    parent_perms = ("batches.view_batch", "batches.change_batch")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    @admin.display(description=gettext_lazy("who"))
    def who(self, event: BatchEvent) -> str:
        if event.actor is not None:
            return event.actor.get_username()
        return event.actor_label or "-"


class BatchForm(forms.ModelForm):
    class Meta:
        model = Batch
        fields = [
            "account",
            "name",
            "description",
            "priority",
            "voice",
            "is_active",
            "max_concurrent_calls",
            "breaker",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "voice" in self.fields:
            # A form posted without it keeps the batch's voice.
            self.fields["voice"].required = False

    def clean_voice(self):
        return self.cleaned_data.get("voice") or self.instance.voice or "human"

    def clean_breaker(self):
        try:
            return validate_breaker(self.cleaned_data.get("breaker"))
        except BreakerError as exc:
            raise ValidationError(f"{exc.field}: {exc}") from None

    def clean_is_active(self):
        value = self.cleaned_data["is_active"]
        if self.instance.pk and value and self.instance.cancelled_at:
            raise ValidationError("A cancelled batch cannot be resumed.")
        return value


@admin.register(Batch)
class BatchAdmin(GuardedActionsMixin, admin.ModelAdmin):
    form = BatchForm
    list_display = [
        "name_and_id",
        "account",
        "priority",
        "state_badge",
        "progress",
        "calls_in_progress",
        "updated_at",
    ]
    list_filter = [StateFilter, "account"]
    search_fields = ["name", "batch_id"]
    list_select_related = ["account", "paused_by"]
    list_per_page = 50
    actions = [
        "pause_selected",
        "resume_selected",
        "cancel_selected",
        "delete_batches",
        "export_results",
    ]
    inlines = [BatchEventInline]
    readonly_fields = [
        "batch_id",
        "state_badge",
        "paused_at",
        "paused_by",
        "pause_source",
        "pause_reason",
        "cancelled_at",
        "completed_at",
        "created_at",
        "updated_at",
        "job_counts",
        "waiting_reasons",
        "report",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "account",
                    "name",
                    "description",
                    "priority",
                    "voice",
                    "is_active",
                ]
            },
        ),
        (gettext_lazy("Caps"), {"fields": ["max_concurrent_calls", "breaker"]}),
        (
            "State",
            {
                "fields": [
                    "batch_id",
                    "state_badge",
                    ("paused_at", "paused_by"),
                    ("pause_source", "pause_reason"),
                    "cancelled_at",
                    "completed_at",
                    ("created_at", "updated_at"),
                ]
            },
        ),
        ("Jobs", {"fields": ["job_counts", "waiting_reasons"]}),
        ("Report", {"fields": ["report"]}),
    ]
    cancel_confirmation_template = "admin/batches/batch/cancel_confirmation.html"
    delete_batches_template = "admin/batches/batch/delete_batches_confirmation.html"

    class Media:
        css = {"all": ["batches/admin.css"]}

    # --- list ------------------------------------------------------------

    def get_changelist(self, request, **kwargs):
        return BatchChangeList

    def _counts(self, batch: Batch) -> dict[str, int]:
        counts = getattr(batch, "status_counts", None)
        if counts is None:
            counts = batch_status_counts([batch.pk])[batch.pk]
            batch.status_counts = counts  # type: ignore[attr-defined]
        return counts

    @admin.display(description=gettext_lazy("batch"), ordering="name")
    def name_and_id(self, batch: Batch) -> str:
        return format_html(
            '<strong>{}</strong><br><code class="cc-id">{}</code>',
            batch.name,
            batch.batch_id,
        )

    @admin.display(description=gettext_lazy("state"))
    def state_badge(self, batch: Batch) -> str:
        state = batch.state
        detail = ""
        if state == Batch.State.PAUSED:
            who = batch.paused_by.get_username() if batch.paused_by else ""
            who = who or (
                batch.get_pause_source_display() if batch.pause_source else ""
            )
            detail = batch.pause_reason or (f"by {who}" if who else "")
        return format_html(
            '<span class="cc-badge cc-{}">{}</span>{}',
            state,
            Batch.State(state).label,
            format_html('<br><small class="cc-reason">{}</small>', detail)
            if detail
            else "",
        )

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, batch: Batch) -> str:
        counts = self._counts(batch)
        summary = counts_summary(counts)
        percent = round(summary["progress"] * 100, 1)
        return format_html(
            '<div class="cc-progress" title="{}"><div class="cc-bar" '
            'style="width: {}%"></div></div><small>{} / {}</small>',
            counts_tooltip(counts),
            percent,
            summary["finished"],
            summary["total"],
        )

    @admin.display(description=gettext_lazy("calls in progress"))
    def calls_in_progress(self, batch: Batch) -> int:
        return self._counts(batch).get(JobStatus.IN_PROGRESS, 0)

    @admin.display(description=gettext_lazy("jobs by status"))
    def job_counts(self, batch: Batch) -> str:
        if not batch.pk:
            return "-"
        counts = self._counts(batch)
        base = reverse("admin:jobs_job_changelist")
        pk = str(batch.pk)
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td class="cc-num">{}</td></tr>',
            (
                (
                    f"{base}?{urlencode({'batch__id__exact': pk, 'status': s})}",
                    STATUS_LABELS[s],
                    counts.get(s, 0),
                )
                for s in REPORTED_STATUSES
            ),
        )
        total = sum(counts.values())
        return format_html(
            '<table class="cc-counts">{}<tr><th><a href="{}">Total</a></th>'
            '<th class="cc-num">{}</th></tr></table>',
            rows,
            f"{base}?{urlencode({'batch__id__exact': pk})}",
            total,
        )

    @admin.display(description=gettext_lazy("report"))
    def report(self, batch: Batch) -> str:
        if not batch.pk:
            return "-"
        return render_report(batch_report(batch=batch))

    # --- change form -----------------------------------------------------

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("account")  # moving a batch between tenants is not a edit
            if obj.cancelled_at:
                fields.append("is_active")
        return fields

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": BatchForm.Meta.fields})]
        return super().get_fieldsets(request, obj)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    @admin.display(description=gettext_lazy("why jobs wait or stopped"))
    def waiting_reasons(self, obj: Batch) -> str:
        """The explain codes summed over the batch's jobs (jobs/explain.py)."""
        from jobs.explain import summary_text

        if obj.pk is None:
            return "-"
        return summary_text(obj) or "-"

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        if not change:
            created = services.batch_create(
                account=form.cleaned_data["account"],
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                priority=form.cleaned_data["priority"],
                is_active=form.cleaned_data["is_active"],
                voice=form.cleaned_data.get("voice") or "human",
                max_concurrent_calls=form.cleaned_data["max_concurrent_calls"],
                breaker=form.cleaned_data["breaker"],
                actor=actor,
            )
            obj.pk = created.pk
            obj.refresh_from_db()
            obj._state.adding = False
            return
        # Only the fields the form changed, through the service: a pause by
        # checkbox is audited like any other, and a worker's concurrent write
        # to fields the form did not touch is not overwritten.
        fields = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in services.UPDATABLE_FIELDS
        }
        if fields:
            services.batch_update(batch=obj, actor=actor, **fields)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            if object_id:
                return HttpResponseRedirect(request.path)
            return HttpResponseRedirect(reverse("admin:batches_batch_changelist"))

    # --- actions ---------------------------------------------------------

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The stock bulk delete would hard-delete rows; ours goes through the
        # delete service and keeps the history.
        actions.pop("delete_selected", None)
        return actions

    @admin.action(
        description=gettext_lazy("Export results (CSV)"), permissions=["view"]
    )
    def export_results(
        self, request: HttpRequest, queryset: QuerySet[Batch]
    ) -> StreamingHttpResponse:
        # The API's export (docs/api.md): one row per job, streamed, with a
        # batch_id column telling the selected batches apart.
        batches = list(queryset.order_by("id").values_list("pk", "batch_id"))
        response = StreamingHttpResponse(
            export.csv_stream(export.results_queryset([pk for pk, _ in batches])),
            content_type="text/csv; charset=utf-8",
        )
        filename = export.export_filename([bid for _, bid in batches], "csv")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @admin.action(
        description=gettext_lazy("Pause selected batches"), permissions=["change"]
    )
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        actor = admin_actor(request)
        changed = skipped = 0
        errors = []
        for batch in queryset:
            try:
                if services.batch_pause(batch=batch, actor=actor):
                    changed += 1
                else:
                    skipped += 1
            except DomainError as exc:
                errors.append(exc.message)
        self.report_outcome(
            request,
            changed=changed,
            done=ngettext(
                "%(count)d batch paused", "%(count)d batches paused", changed
            ),
            none=_("No batches paused"),
            skipped=skipped,
            skipped_as=ngettext(
                "%(count)d was already paused", "%(count)d were already paused", skipped
            ),
            errors=errors,
        )

    @admin.action(
        description=gettext_lazy("Resume selected batches"), permissions=["change"]
    )
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        actor = admin_actor(request)
        changed = skipped = 0
        errors = []
        for batch in queryset:
            try:
                if services.batch_resume(batch=batch, actor=actor):
                    changed += 1
                else:
                    skipped += 1
            except DomainError as exc:
                errors.append(exc.message)
        self.report_outcome(
            request,
            changed=changed,
            done=ngettext(
                "%(count)d batch resumed", "%(count)d batches resumed", changed
            ),
            none=_("No batches resumed"),
            skipped=skipped,
            skipped_as=ngettext(
                "%(count)d was already active", "%(count)d were already active", skipped
            ),
            errors=errors,
        )

    @admin.action(
        description=gettext_lazy("Cancel selected batches…"), permissions=["change"]
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Batch]):
        batches = list(queryset)
        if request.POST.get("post") == "yes":
            self._cancel(request, batches)
            return None
        return self._cancel_confirmation(request, batches, single=False)

    @admin.action(
        description=gettext_lazy("Delete selected batches…"), permissions=["delete"]
    )
    def delete_batches(self, request: HttpRequest, queryset: QuerySet[Batch]):
        batches = list(queryset)
        if request.POST.get("post") == "yes":
            self._delete(
                request, batches, delete_jobs=bool(request.POST.get("delete_jobs"))
            )
            return None
        return self._delete_confirmation(request, batches, single=False)

    def _report_operations(
        self, request: HttpRequest, started: list[Operation]
    ) -> None:
        """One message linking to each background sweep's progress page."""
        if not started:
            return
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (
                    reverse("admin:batches_operation_change", args=[op.pk]),
                    op.batch_public_id,
                )
                for op in started
            ),
        )
        self.message_user(
            request,
            format_html(
                "{} {}",
                ngettext(
                    "The jobs of %(count)d batch are swept in the background; "
                    "progress:",
                    "The jobs of %(count)d batches are swept in the background; "
                    "progress:",
                    len(started),
                )
                % {"count": len(started)},
                links,
            ),
            messages.INFO,
        )

    def _cancel(self, request: HttpRequest, batches: list[Batch]) -> list[Operation]:
        actor = admin_actor(request)
        changed = skipped = jobs = 0
        errors = []
        started: list[Operation] = []
        for batch in batches:
            was_cancelled = batch.cancelled_at is not None
            try:
                result = operations.batch_cancel_request(batch=batch, actor=actor)
            except DomainError as exc:
                errors.append(exc.message)
                continue
            jobs += result.cancelled_jobs
            if result.operation is not None:
                started.append(result.operation)
            if was_cancelled:
                skipped += 1
            else:
                changed += 1
        self.report_outcome(
            request,
            changed=changed,
            done=ngettext(
                "%(count)d batch cancelled", "%(count)d batches cancelled", changed
            ),
            none=_("No batches cancelled"),
            skipped=skipped,
            skipped_as=ngettext(
                "%(count)d was already cancelled",
                "%(count)d were already cancelled",
                skipped,
            ),
            errors=errors,
            # The background sweeps report in their own message, below.
            detail=""
            if started and not jobs
            else ngettext("%(count)d job cancelled", "%(count)d jobs cancelled", jobs)
            % {"count": jobs},
        )
        self._report_operations(request, started)
        return started

    def _delete(
        self, request: HttpRequest, batches: list[Batch], *, delete_jobs: bool
    ) -> list[Operation]:
        actor = admin_actor(request)
        deleted = cancelled_jobs = deleted_jobs = 0
        errors = []
        started: list[Operation] = []
        for batch in batches:
            try:
                result = operations.batch_delete_request(
                    batch=batch, actor=actor, delete_jobs=delete_jobs
                )
            except DomainError as exc:
                errors.append(exc.message)
                continue
            if result.operation is not None:
                started.append(result.operation)
            deleted += 1
            cancelled_jobs += result.cancelled_jobs
            deleted_jobs += result.deleted_jobs
        if deleted:
            detail = ngettext(
                "%(count)d job cancelled", "%(count)d jobs cancelled", cancelled_jobs
            ) % {"count": cancelled_jobs}
            if delete_jobs:
                detail = ngettext(
                    "%(count)d job deleted", "%(count)d jobs deleted", deleted_jobs
                ) % {"count": deleted_jobs}
            done = ngettext(
                "%(count)d batch deleted", "%(count)d batches deleted", deleted
            ) % {"count": deleted}
            only_background = len(started) == deleted
            self.message_user(
                request,
                done if only_background else f"{done}; {detail}",
                messages.SUCCESS,
            )
        self.report_errors(request, errors)
        self._report_operations(request, started)
        return started

    def _rows(self, batches: list[Batch]) -> list[dict[str, Any]]:
        counts = batch_status_counts(b.pk for b in batches)
        rows = []
        for batch in batches:
            c = counts[batch.pk]
            total = sum(c.values())
            to_cancel = cancellable_count(c)
            rows.append(
                {
                    "batch": batch,
                    "counts": c,
                    "tooltip": counts_tooltip(c),
                    "total": total,
                    "to_cancel": to_cancel,
                    "kept": total - to_cancel,
                }
            )
        return rows

    def _confirmation_context(
        self, request: HttpRequest, batches: list[Batch], *, title: str, single: bool
    ) -> dict[str, Any]:
        rows = self._rows(batches)
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "rows": rows,
            "single": single,
            "original": batches[0] if single else None,
            "selected": [b.pk for b in batches],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action": request.POST.get("action", ""),
            "to_cancel": sum(r["to_cancel"] for r in rows),
            "kept": sum(r["kept"] for r in rows),
            "total": sum(r["total"] for r in rows),
        }

    def _cancel_confirmation(self, request, batches, *, single: bool):
        context = self._confirmation_context(
            request, batches, title=_("Cancel batches: are you sure?"), single=single
        )
        return TemplateResponse(request, self.cancel_confirmation_template, context)

    def _delete_confirmation(self, request, batches, *, single: bool):
        context = self._confirmation_context(
            request, batches, title=_("Delete batches: are you sure?"), single=single
        )
        return TemplateResponse(request, self.delete_batches_template, context)

    # --- object tools: POST-only views, same services ----------------------

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/pause/",
                view(self.pause_view),
                name=f"{prefix}_pause",
            ),
            path(
                "<path:object_id>/resume/",
                view(self.resume_view),
                name=f"{prefix}_resume",
            ),
            path(
                "<path:object_id>/cancel/",
                view(self.cancel_view),
                name=f"{prefix}_cancel",
            ),
            *super().get_urls(),
        ]

    def _object_for_transition(
        self, request: HttpRequest, object_id: str, *, perm: str = "change"
    ) -> Batch:
        batch = self.get_object(request, unquote(object_id))
        if batch is None:
            raise Http404("No such batch.")
        allowed = (
            self.has_delete_permission(request, batch)
            if perm == "delete"
            else self.has_change_permission(request, batch)
        )
        if not allowed:
            raise PermissionDenied
        return batch

    def _change_url(self, batch: Batch) -> str:
        return reverse("admin:batches_batch_change", args=[batch.pk])

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        batch = self._object_for_transition(request, object_id)
        reason = request.POST.get("reason", "").strip()
        try:
            paused = services.batch_pause(
                batch=batch, actor=admin_actor(request), reason=reason
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            if paused:
                self.message_user(
                    request, _("Batch “%(name)s” paused.") % {"name": batch.name}
                )
            else:
                self.message_user(
                    request,
                    _("Batch “%(name)s” was already paused.") % {"name": batch.name},
                    messages.WARNING,
                )
        return HttpResponseRedirect(self._change_url(batch))

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        batch = self._object_for_transition(request, object_id)
        try:
            resumed = services.batch_resume(batch=batch, actor=admin_actor(request))
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            if resumed:
                self.message_user(
                    request, _("Batch “%(name)s” resumed.") % {"name": batch.name}
                )
            else:
                self.message_user(
                    request,
                    _("Batch “%(name)s” was already active.") % {"name": batch.name},
                    messages.WARNING,
                )
        return HttpResponseRedirect(self._change_url(batch))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        # The button POSTs here; the first POST shows the confirmation page,
        # whose own POST (post=yes) cancels.
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        batch = self._object_for_transition(request, object_id)
        if request.POST.get("post") == "yes":
            started = self._cancel(request, [batch])
            if started:  # to the bar that shows the sweep's progress
                return HttpResponseRedirect(_operation_url(started[0]))
            return HttpResponseRedirect(self._change_url(batch))
        return self._cancel_confirmation(request, [batch], single=True)

    def delete_view(self, request, object_id, extra_context=None):
        # The stock delete view hard-deletes (and trips over PROTECT on jobs);
        # this one shows the service's consequences and calls it.
        batch = self._object_for_transition(request, object_id, perm="delete")
        if request.method == "POST" and request.POST.get("post") == "yes":
            started = self._delete(
                request, [batch], delete_jobs=bool(request.POST.get("delete_jobs"))
            )
            if started:
                return HttpResponseRedirect(_operation_url(started[0]))
            return HttpResponseRedirect(reverse("admin:batches_batch_changelist"))
        return self._delete_confirmation(request, [batch], single=True)


def _operation_url(operation: Operation) -> str:
    return reverse("admin:batches_operation_change", args=[operation.pk])


def operation_progress(operation: Operation) -> dict[str, Any]:
    """What the progress bar shows; the JSON its page polls."""
    return {
        "state": operation.state,
        "state_label": operation.get_state_display(),
        "done": operation.done,
        "total": operation.total,
        "percent": operation.percent,
        "cancelled_jobs": operation.cancelled_jobs,
        "deleted_jobs": operation.deleted_jobs,
        "errors": [e.get("error", "") for e in operation.errors],
        "finished": operation.finished,
    }


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    """Background sweeps: read-only, with a progress bar that polls."""

    change_form_template = "admin/batches/operation/change_form.html"
    list_display = [
        "created_at",
        "batch_public_id",
        "kind",
        "state",
        "progress",
        "actor_label",
        "source",
    ]
    list_filter = ["state", "kind", "source"]
    search_fields = ["batch_public_id", "actor_label", "=operation_id"]
    list_select_related = ["actor", "account"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "operation_id",
        "account",
        "batch_public_id",
        "kind",
        "errors",
        "attempts",
        "reason",
        "source",
        "actor",
        "actor_label",
        "remote_addr",
        "created_at",
        "started_at",
        "finished_at",
    ]
    # State, done, total and the counts are in the progress block, live.
    fields = list(readonly_fields)  # type: ignore[assignment]

    @admin.display(description=gettext_lazy("progress"))
    def progress(self, operation: Operation) -> str:
        return f"{operation.percent}% ({operation.done:,}/{operation.total:,})"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/progress.json",
                view(self.progress_view),
                name="batches_operation_progress",
            ),
            *super().get_urls(),
        ]

    def progress_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        operation = self.get_object(request, unquote(object_id))
        if operation is None:
            raise Http404("No such operation.")
        if not self.has_view_permission(request, operation):
            raise PermissionDenied
        return JsonResponse(operation_progress(operation))

    def render_change_form(self, request, context, *args, **kwargs):
        original = context.get("original")
        if original is not None:
            context["progress"] = operation_progress(original)
            context["progress_url"] = reverse(
                "admin:batches_operation_progress", args=[original.pk]
            )
        return super().render_change_form(request, context, *args, **kwargs)


@admin.register(BatchEvent)
class BatchEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "batch_public_id",
        "action",
        "source",
        "actor_label",
        "remote_addr",
        "reason",
    ]
    list_filter = ["action", "source"]
    search_fields = ["batch_public_id", "actor_label", "reason"]
    list_select_related = ["actor"]
    date_hierarchy = "created_at"
