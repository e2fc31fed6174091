"""The base of the project's management commands.

Django builds ``--help`` from the command's ``help`` attribute once per
parser. Ours are ``gettext_lazy`` strings, so that ``--help`` speaks the
active language; argparse needs a plain string, so the parser gets the text
translated at the moment it is built.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class TranslatedCommand(BaseCommand):
    """A ``BaseCommand`` whose (lazy) ``help`` is translated in ``--help``."""

    help: Any = ""  # a gettext_lazy string

    def create_parser(
        self, prog_name: str, subcommand: str, **kwargs: Any
    ) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.description = str(type(self).help) or None
        return parser
