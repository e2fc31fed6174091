from __future__ import annotations

from rest_framework import serializers

from callcenter.api import StrictIntegerField, StrictSerializer

# A generous ceiling: a typo of a few extra digits is refused, not booked.
MAX_CREDITS_PER_REQUEST = 10**9


class CreditsAddSerializer(StrictSerializer):
    # JSON integers only: "10", 10.0 and true are refused, not coerced.
    amount = StrictIntegerField(min_value=1, max_value=MAX_CREDITS_PER_REQUEST)
    account = serializers.SlugField(
        required=False,
        help_text="The account's slug. Staff with the accounts.add_credits "
        "permission may name any account; others may only top up their own, "
        "which is the default.",
    )
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=255, default=""
    )


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


class AccountCreateSerializer(StrictSerializer):
    slug = serializers.SlugField(
        max_length=64, help_text="Letters, digits, - and _; unique."
    )
    name = serializers.CharField(max_length=200)
    credits = StrictIntegerField(
        min_value=0,
        max_value=MAX_CREDITS_PER_REQUEST,
        default=0,
        help_text="Initial credits, booked in the ledger. More than 0 also "
        "takes the accounts.add_credits permission.",
    )


class AccountSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    credits = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class AccountCreatedSerializer(serializers.Serializer):
    account = AccountSerializer()
    message = serializers.CharField()
