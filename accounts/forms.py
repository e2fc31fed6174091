from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.dialing import (
    NON_GEOGRAPHIC,
    NumberType,
    parse_holidays,
    unknown_countries,
)
from accounts.models import Account
from accounts.serializers import MAX_CREDITS_PER_REQUEST


class AddCreditsForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=MAX_CREDITS_PER_REQUEST)
    note = forms.CharField(
        max_length=255, required=False, help_text=_("e.g. the invoice number")
    )


DIALING_RULES = (
    "allowed_number_types",
    "allowed_countries",
    "holidays",
    "max_calls_per_number_per_24h",
    "max_concurrent_calls",
)


class AccountAdminForm(forms.ModelForm):
    """The account in the admin, with its dialing rules as checkboxes and a
    list of country codes. The admin saves the rules through
    ``account_set_dialing_rules`` (validated and audited there)."""

    allowed_number_types = forms.MultipleChoiceField(
        choices=NumberType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_(
            "Premium rate, shared cost, UAN and VoIP numbers can cost the "
            "account money for the benefit of the number's owner: enable them only "
            "for an account that needs them."
        ),
    )
    allowed_countries = forms.CharField(
        required=False,
        help_text=_(
            "ISO 3166 codes separated by spaces or commas (e.g. US CA GB). "
            "Empty: every country except the high-risk set "
            "(DIAL_HIGH_RISK_COUNTRIES)."
        ),
    )

    holidays = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_(
            "Dates (YYYY-MM-DD) separated by spaces, commas or lines: nothing "
            "is dialled on them, in the recipient's local time."
        ),
    )

    class Meta:
        model = Account
        fields = ["name", "slug", *DIALING_RULES]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Left empty, the frequency cap keeps its value (None: unchanged).
        if "max_calls_per_number_per_24h" in self.fields:
            self.fields["max_calls_per_number_per_24h"].required = False
        if self.instance.pk is not None:
            self.initial["allowed_countries"] = " ".join(
                self.instance.allowed_countries
            )
            self.initial["holidays"] = " ".join(self.instance.holidays)

    def clean_holidays(self) -> list[str]:
        raw = self.cleaned_data.get("holidays") or ""
        try:
            return parse_holidays(raw.replace(",", " ").split())
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_allowed_countries(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_countries") or ""
        codes = sorted(set(raw.replace(",", " ").upper().split()))
        unknown = unknown_countries(codes)
        if unknown:
            raise forms.ValidationError(
                f"Unknown country codes: {', '.join(unknown)}. Use ISO 3166 "
                f"alpha-2 codes such as US or GB, or {NON_GEOGRAPHIC}."
            )
        return codes
