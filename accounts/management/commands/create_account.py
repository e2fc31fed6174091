"""`python manage.py create_account SLUG --name "…" [--credits N]`."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_slug
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.services import account_create
from callcenter.actor import Actor
from callcenter.commands import TranslatedCommand


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Create an account (a tenant) and print it. Idempotent: if SLUG exists, "
        "it is printed unchanged and no credits are added. Initial credits are "
        "booked in the ledger."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help=_("Letters, digits, - and _; at most 64."))
        parser.add_argument("--name", help=_("Display name (default: the slug)."))
        parser.add_argument(
            "--credits",
            type=int,
            default=0,
            help=_("Initial credits, booked as a ledger entry (default 0)."),
        )

    def handle(self, *args, **options):
        slug = options["slug"]
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"{slug!r}: {exc.messages[0]}") from None
        if len(slug) > 64:
            raise CommandError(_("%(slug)r: at most 64 characters.") % {"slug": slug})
        name = (options["name"] or slug).strip()
        if not name or len(name) > 200:
            raise CommandError(_("--name must be 1 to 200 characters."))
        if options["credits"] < 0:
            raise CommandError(_("--credits must be 0 or more."))
        result = account_create(
            slug=slug,
            name=name,
            credits=options["credits"],
            actor=Actor.command("create_account"),
            exist_ok=True,
        )
        account = result.account
        if not result.created:
            differs = []
            if options["name"] and account.name != name:
                differs.append(_("name %(name)r") % {"name": account.name})
            if options["credits"]:
                differs.append(_("no credits added"))
            note = f" ({'; '.join(differs)})" if differs else ""
            self.stderr.write(
                _("Account %(slug)r already exists; unchanged%(note)s.")
                % {"slug": slug, "note": note}
            )
        # Keys stay English: scripts read them.
        self.stdout.write(f"slug: {account.slug}")
        self.stdout.write(f"name: {account.name}")
        self.stdout.write(f"credits: {account.credits}")
        self.stdout.write(f"created: {'yes' if result.created else 'no'}")
