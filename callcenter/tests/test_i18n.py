"""Spanish and English: the catalogues, the language a request gets, and
the Spanish dashboard and API errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import translation
from django.utils.translation import trans_real

from batches.tests.factories import BatchFactory

ROOT = Path(settings.BASE_DIR)
LOCALE = ROOT / "locale"
IGNORE = [".venv/*", "bench/*", "test-artifacts/*", "static/*"]


@pytest.fixture(scope="module", autouse=True)
def compiled_catalogues():
    """`make test` compiles them first; a bare pytest run does it here."""
    call_command("compilemessages", verbosity=0)
    # Catalogues are cached per process: forget any read before compiling.
    trans_real._translations = {}
    trans_real._default = None


@pytest.fixture(autouse=True)
def back_to_the_default_language():
    """A request in Spanish leaves Spanish active in the thread (the
    LocaleMiddleware activates it): the next test file must not inherit it."""
    yield
    translation.deactivate()


def msgattrib(*args: str) -> str:
    return subprocess.run(
        ["msgattrib", *args], capture_output=True, text=True, check=True
    ).stdout


def test_es_catalogue__makemessages_leaves_nothing_untranslated(
    tmp_path, settings, monkeypatch
):
    # makemessages rewrites the catalogue of the directory it runs in, so it
    # runs in a copy of the tree: the sources linked, the catalogues copied.
    # (Run in the tree itself, it would rewrite the real catalogue, and this
    # test would then read a stale copy.)
    for entry in ROOT.iterdir():
        if entry.is_dir() and entry.name not in {"locale", ".git", ".venv"}:
            (tmp_path / entry.name).symlink_to(entry, target_is_directory=True)
    shutil.copytree(LOCALE, tmp_path / "locale")
    settings.LOCALE_PATHS = [tmp_path / "locale"]
    monkeypatch.chdir(tmp_path)
    before = (LOCALE / "es" / "LC_MESSAGES" / "django.po").read_bytes()

    call_command(
        "makemessages",
        locale=["es"],
        ignore_patterns=IGNORE,
        no_obsolete=True,
        no_location=True,
        symlinks=True,
        verbosity=0,
    )

    assert (LOCALE / "es" / "LC_MESSAGES" / "django.po").read_bytes() == before
    po = tmp_path / "locale" / "es" / "LC_MESSAGES" / "django.po"
    assert po.read_text().count("msgid") > 50  # it found our strings
    untranslated = msgattrib("--untranslated", "--no-obsolete", str(po))
    fuzzy = msgattrib("--only-fuzzy", "--no-obsolete", str(po))
    todo = "run `make makemessages`, then translate locale/es/LC_MESSAGES/django.po"
    assert "msgid" not in untranslated, f"untranslated in es ({todo}):\n{untranslated}"
    assert "msgid" not in fuzzy, f"fuzzy in es ({todo}):\n{fuzzy}"


@pytest.mark.django_db
def test_dashboard__in_spanish_from_accept_language(admin_client):
    BatchFactory(name="Renovaciones")

    spanish = admin_client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9")
    english = admin_client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en")

    html = spanish.content.decode()
    assert spanish["Content-Language"] == "es"
    assert "Campañas activas y pausadas" in html
    assert "<h1>Panel</h1>" in html
    assert "Llamadas por minuto, última hora" in html
    assert '"pause": "Pausar"' in html  # the script's words
    assert "Active and paused batches" not in html
    assert "Active and paused batches" in english.content.decode()


@pytest.mark.django_db
def test_dashboard__language_selector_wins_over_accept_language(admin_client):
    response = admin_client.post(
        "/i18n/setlang/", {"language": "es", "next": "/dashboard/"}
    )
    assert response.status_code == 302

    page = admin_client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en")

    assert "Campañas activas y pausadas" in page.content.decode()
    assert 'id="cc-language-select"' in page.content.decode()


@pytest.mark.django_db
def test_api_errors__in_spanish(api_client, client):
    ours = api_client.get("/api/v1/batches/nope", HTTP_ACCEPT_LANGUAGE="es")
    drf = client.get("/api/v1/batches", HTTP_ACCEPT_LANGUAGE="es")
    english = api_client.get("/api/v1/batches/nope")

    assert ours.status_code == 404
    assert ours.json()["error"] == {
        "code": "not_found",
        "message": "Campaña no encontrada.",
        "fields": {},
    }
    assert drf.status_code == 401
    assert drf.json()["error"]["code"] == "not_authenticated"
    assert "autenticación" in drf.json()["error"]["message"]
    assert english.json()["error"]["message"] == "Batch not found."


@pytest.mark.django_db
def test_language_code__defaults_to_english():
    assert settings.LANGUAGE_CODE == "en"
    page = Client().get("/admin/login/")
    assert page["Content-Language"] == "en"


@pytest.mark.parametrize(("value", "ok"), [("es", True), ("fr", False)])
def test_language_code__must_be_a_language_we_have(value, ok):
    from callcenter.tests.test_settings import LOAD, PROD_ENV, run_django

    result = run_django(
        LOAD + "; print(settings.LANGUAGE_CODE)",
        {**PROD_ENV, "LANGUAGE_CODE": value},
    )

    if ok:
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["ok", "es"]
    else:
        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr
        assert "LANGUAGE_CODE" in result.stderr


@pytest.mark.django_db
def test_admin_action_message__in_spanish(admin_client):
    from django.contrib.admin import helpers
    from django.contrib.messages import get_messages
    from django.urls import reverse

    from accounts.tests.factories import UserFactory
    from batches import services
    from callcenter.actor import Actor, Source

    a, b = BatchFactory(), BatchFactory()
    staff = Actor(source=Source.ADMIN, user=UserFactory(is_staff=True))
    services.batch_pause(batch=b, actor=staff)
    admin_client.post("/i18n/setlang/", {"language": "es", "next": "/admin/"})

    response = admin_client.post(
        reverse("admin:batches_batch_changelist"),
        {"action": "pause_selected", helpers.ACTION_CHECKBOX_NAME: [a.pk, b.pk]},
        follow=True,
    )

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "1 campaña pausada; 1 ya estaba pausada"
    ]
    # The action's name in the changelist's menu too.
    assert "Pausar las campañas seleccionadas" in response.content.decode()
    # And our own column headings.
    assert "Llamadas en curso" in response.content.decode()


@pytest.mark.django_db
def test_admin_confirmation_page__in_spanish(admin_client):
    from django.contrib.admin import helpers
    from django.urls import reverse

    from jobs.tests.factories import JobFactory

    batch = BatchFactory()
    JobFactory(batch=batch)
    JobFactory(batch=batch)
    admin_client.post("/i18n/setlang/", {"language": "es", "next": "/admin/"})

    page = admin_client.post(
        reverse("admin:batches_batch_changelist"),
        {"action": "cancel_selected", helpers.ACTION_CHECKBOX_NAME: [batch.pk]},
    )

    html = page.content.decode()
    assert "La cancelación es permanente" in html
    assert 'value="Sí, cancelar 1 campaña y 2 trabajos"' in html
    assert "Cancelar campañas: ¿está seguro?" in html


@pytest.mark.django_db
def test_command_output__in_spanish():
    from io import StringIO

    from jobs.tests.factories import JobFactory

    batch = BatchFactory(is_active=False)
    JobFactory(batch=batch)
    out = StringIO()

    with translation.override("es"):
        call_command("cancel_inactive_batch_jobs", dry_run=True, stdout=out)

    assert out.getvalue().splitlines()[-1] == (
        "Simulación: se cancelarían 1 trabajos en 1 campaña(s). No se cambió nada."
    )


def test_model_labels__in_spanish_values_unchanged():
    from batches.models import Batch
    from jobs.models import Job, JobStatus

    with translation.override("es"):
        assert str(Batch._meta.verbose_name_plural) == "campañas"
        assert str(JobStatus.CANCELLED.label) == "Cancelado"
        assert str(Batch.State.CANCELLED.label) == "Cancelada"
        assert str(Job._meta.verbose_name) == "trabajo"
        assert str(Job._meta.get_field("phone_number").verbose_name) == (
            "número de teléfono"
        )
        assert str(Batch._meta.get_field("priority").help_text) == (
            "La más alta se ejecuta primero."
        )
    assert str(JobStatus.CANCELLED.label) == "Cancelled"
    assert JobStatus.CANCELLED.value == "cancelled"


def test_command_option_help__in_spanish():
    from django.core.management import get_commands, load_command_class

    name = "cancel_inactive_batch_jobs"
    command = load_command_class(get_commands()[name], name)

    with translation.override("es"):
        text = command.create_parser("manage.py", name).format_help()

    assert "No pedir confirmación." in " ".join(text.split())


OUR_APPS = ("accounts", "batches", "jobs", "webhooks", "callcenter")


def test_every_command_description__in_spanish():
    """``manage.py COMMAND --help`` describes each of our commands in the
    active language."""
    from django.core.management import get_commands, load_command_class

    ours = sorted(name for name, app in get_commands().items() if app in OUR_APPS)
    assert {"run_call_worker", "cancel_inactive_batch_jobs"} <= set(ours)
    for name in ours:
        command = load_command_class(get_commands()[name], name)
        english = command.create_parser("manage.py", name).description
        with translation.override("es"):
            spanish = command.create_parser("manage.py", name).description
        assert english, name
        assert spanish != english, f"{name}: --help is not translated"


def test_unknown_account_message__in_spanish():
    from accounts.services import unknown_account_message

    with translation.override("es"):
        spanish = unknown_account_message("acme")
    with translation.override("en"):
        english = unknown_account_message("acme")
    assert spanish.startswith("No existe la cuenta 'acme'.")
    assert "create_account acme" in spanish
    assert english.startswith("No account 'acme'.")
