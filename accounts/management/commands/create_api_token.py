"""`python manage.py create_api_token USERNAME`: print the user's API token.

Only the key goes to stdout, so scripts can do
``TOKEN=$(python manage.py create_api_token alice)``; notes go to stderr.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.models import Account, Membership


class Command(BaseCommand):
    help = (
        "Print USERNAME's API token (creating it if needed). With --account, "
        "make the user a member of that account; with --create-user, create "
        "the user too."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--account", metavar="SLUG", help="Account slug.")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="Create the user (no password: API only) if it does not exist.",
        )
        parser.add_argument(
            "--role",
            choices=Membership.Role.values,
            help="Role in the account (default member; viewer is read-only).",
        )
        parser.add_argument(
            "--rotate", action="store_true", help="Replace an existing token."
        )

    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"]
        with transaction.atomic():
            account = None
            if options["account"]:
                account = Account.objects.filter(slug=options["account"]).first()
                if account is None:
                    raise CommandError(f"No account with slug {options['account']!r}.")
            user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
            if user is None:
                if not options["create_user"]:
                    raise CommandError(
                        f"No user {username!r}; pass --create-user to create it."
                    )
                if account is None:
                    raise CommandError("--create-user needs --account SLUG.")
                user = User(**{User.USERNAME_FIELD: username})
                user.set_unusable_password()
                user.save()
                self.stderr.write(f"Created user {username!r}.")
            membership = Membership.objects.filter(user=user).first()
            if account is not None:
                if membership is None:
                    membership = Membership.objects.create(
                        user=user,
                        account=account,
                        role=options["role"] or Membership.Role.MEMBER,
                    )
                    self.stderr.write(
                        f"Added {username!r} to {account.slug!r} as {membership.role}."
                    )
                elif membership.account_id != account.pk:
                    raise CommandError(
                        f"{username!r} already belongs to account "
                        f"{membership.account.slug!r}; a user has one account."
                    )
            if membership is None:
                raise CommandError(
                    f"{username!r} belongs to no account, so its token would "
                    "get 403; pass --account SLUG."
                )
            if options["role"] and membership.role != options["role"]:
                membership.role = options["role"]
                membership.save(update_fields=["role"])
                self.stderr.write(f"Role of {username!r} is now {membership.role}.")
            if options["rotate"]:
                Token.objects.filter(user=user).delete()
            token, created = Token.objects.get_or_create(user=user)
        if not created:
            self.stderr.write("Existing token (use --rotate for a new one).")
        self.stdout.write(token.key)
