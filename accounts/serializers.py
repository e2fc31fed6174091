from __future__ import annotations

from typing import Any

from rest_framework import serializers

# A generous ceiling: a typo of a few extra digits is refused, not booked.
MAX_CREDITS_PER_REQUEST = 10**9


class CreditsAddSerializer(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, max_value=MAX_CREDITS_PER_REQUEST)
    account = serializers.SlugField(
        required=False,
        help_text="The account's slug. Staff with the accounts.add_credits "
        "permission may name any account; others may only top up their own, "
        "which is the default.",
    )
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=255, default=""
    )

    def validate_amount(self, value: int) -> int:
        raw = self.initial_data.get("amount")
        # JSON integers only: "10", 10.0 and true are refused, not coerced.
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise serializers.ValidationError("Must be a JSON integer.")
        return value

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field."] for name in unknown}
                )
        return super().to_internal_value(data)


class CreditsSerializer(serializers.Serializer):
    account = serializers.CharField()
    credits = serializers.IntegerField()
    call_reservation = serializers.IntegerField(
        help_text="Credits reserved when a call starts; below this the "
        "account's campaigns are suspended."
    )


class CreditsAddedSerializer(serializers.Serializer):
    account = serializers.CharField()
    added = serializers.IntegerField()
    credits = serializers.IntegerField()
    resumed_batches = serializers.ListField(child=serializers.CharField())
    unsuspended_jobs = serializers.IntegerField()
