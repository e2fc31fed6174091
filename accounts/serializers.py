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


class AccountCreateSerializer(serializers.Serializer):
    slug = serializers.SlugField(
        max_length=64, help_text="Letters, digits, - and _; unique."
    )
    name = serializers.CharField(max_length=200)
    credits = serializers.IntegerField(
        min_value=0,
        max_value=MAX_CREDITS_PER_REQUEST,
        default=0,
        help_text="Initial credits, booked in the ledger. More than 0 also "
        "takes the accounts.add_credits permission.",
    )

    def validate_credits(self, value: int) -> int:
        raw = self.initial_data.get("credits", 0)
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


class AccountSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    credits = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class AccountCreatedSerializer(serializers.Serializer):
    account = AccountSerializer()
    message = serializers.CharField()
