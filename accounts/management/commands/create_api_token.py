"""`python manage.py create_api_token USERNAME`: make the user's API key and
print it, once.

Only the key goes to stdout, so scripts can do
``TOKEN=$(python manage.py create_api_token alice)``; notes go to stderr.
The key is stored only as a hash (accounts/tokens.py), so it cannot be shown
again: for a user who has one, ``--rotate`` makes a new key and the old one
stops working.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Account, ApiToken, Membership
from accounts.services import unknown_account_message
from accounts.tokens import api_token_create
from callcenter.commands import TranslatedCommand


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Make USERNAME's API key and print it (keys are stored hashed: this is "
        "the only time it is shown). With --account, make the user a member of "
        "that account; with --create-user, create the user too."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--account", metavar="SLUG", help=_("Account slug."))
        parser.add_argument(
            "--create-user",
            action="store_true",
            help=_("Create the user (no password: API only) if it does not exist."),
        )
        parser.add_argument(
            "--role",
            choices=Membership.Role.values,
            help=_("Role in the account (default member; viewer is read-only)."),
        )
        parser.add_argument(
            "--rotate",
            action="store_true",
            help=_("Replace an existing key (the old one stops working)."),
        )

    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"]
        with transaction.atomic():
            account = None
            if options["account"]:
                account = Account.objects.filter(slug=options["account"]).first()
                if account is None:
                    raise CommandError(unknown_account_message(options["account"]))
            user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
            if user is None:
                if not options["create_user"]:
                    raise CommandError(
                        _("No user %(user)r; pass --create-user to create it.")
                        % {"user": username}
                    )
                if account is None:
                    raise CommandError(_("--create-user needs --account SLUG."))
                user = User(**{User.USERNAME_FIELD: username})
                user.set_unusable_password()
                user.save()
                self.stderr.write(_("Created user %(user)r.") % {"user": username})
            membership = Membership.objects.filter(user=user).first()
            if account is not None:
                if membership is None:
                    membership = Membership.objects.create(
                        user=user,
                        account=account,
                        role=options["role"] or Membership.Role.MEMBER,
                    )
                    self.stderr.write(
                        _("Added %(user)r to %(account)r as %(role)s.")
                        % {
                            "user": username,
                            "account": account.slug,
                            "role": membership.role,
                        }
                    )
                elif membership.account_id != account.pk:
                    raise CommandError(
                        _(
                            "%(user)r already belongs to account %(account)r; a "
                            "user has one account."
                        )
                        % {"user": username, "account": membership.account.slug}
                    )
            if membership is None:
                raise CommandError(
                    _(
                        "%(user)r belongs to no account, so its token would get "
                        "403; pass --account SLUG."
                    )
                    % {"user": username}
                )
            if options["role"] and membership.role != options["role"]:
                membership.role = options["role"]
                membership.save(update_fields=["role"])
                self.stderr.write(
                    _("Role of %(user)r is now %(role)s.")
                    % {"user": username, "role": membership.role}
                )
            existing = ApiToken.objects.filter(user=user).first()
            if existing is not None and not options["rotate"]:
                raise CommandError(
                    _(
                        "%(user)r already has an API key (%(prefix)s…). Keys are "
                        "stored hashed and shown only when made; pass --rotate for "
                        "a new key (the old one stops working)."
                    )
                    % {"user": username, "prefix": existing.prefix}
                )
            key = api_token_create(user=user)
        if existing is not None:
            self.stderr.write(
                _("Replaced the key %(prefix)s….") % {"prefix": existing.prefix}
            )
        self.stdout.write(key)
