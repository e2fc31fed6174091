from __future__ import annotations

from django import forms

from accounts.serializers import MAX_CREDITS_PER_REQUEST


class AddCreditsForm(forms.Form):
    amount = forms.IntegerField(min_value=1, max_value=MAX_CREDITS_PER_REQUEST)
    note = forms.CharField(
        max_length=255, required=False, help_text="e.g. the invoice number"
    )
