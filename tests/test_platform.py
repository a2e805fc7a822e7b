"""Platform wiring: schema current, compose file, demo data, health endpoint."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, override_settings

from config.celery import app as celery_app
from exchange.models import Enrolment, Membership, Organisation, Pupil, PupilItem, PupilParent

ROOT = Path(__file__).resolve().parent.parent


def test_committed_openapi_schema_is_current(tmp_path: Path) -> None:
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    committed = ROOT / "api_schema" / "openapi.yaml"
    assert generated.read_text() == committed.read_text(), (
        "api_schema/openapi.yaml is out of date: run ./scripts/schema"
    )


def test_schema_documents_the_error_shape_on_every_operation() -> None:
    schema = yaml.safe_load((ROOT / "api_schema" / "openapi.yaml").read_text())
    assert "Error" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "401" in operation["responses"], (method, path)
            if method == "post":
                assert "400" in operation["responses"], (method, path)


@pytest.mark.django_db
def test_docs_pages_list_the_operations() -> None:
    client = Client()
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/enrolments/create" in schema.content


def test_docker_compose_wiring() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "db", "broker"} <= set(services)
    assert "gunicorn" in " ".join(services["web"]["command"])
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1, "exactly one beat"
    assert "beat" in " ".join(services["beat"]["command"])
    for name in ("db", "broker", "web"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["db"]["condition"] == "service_healthy"
        assert depends["broker"]["condition"] == "service_healthy"
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["CELERY_BROKER_URL"].startswith("amqp://")
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert services["db"]["image"].startswith("postgres:")
    assert services["broker"]["image"].startswith("rabbitmq:")
    assert set(compose["volumes"]) >= {"pgdata", "rabbitmq", "media"}
    assert (ROOT / "Dockerfile").is_file()


@pytest.mark.django_db
def test_seed_demo_creates_the_personas_and_is_idempotent() -> None:
    from consent.models import Consent, Share
    from exchange.models import Handover, Notice, ProgressReport, Trajectory
    from permissions.access import item_list_for_user

    models = (Organisation, Pupil, Enrolment, PupilParent, Membership, PupilItem, Consent, Share, Trajectory, Handover)
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    counts = [m.objects.count() for m in models]
    call_command("seed_demo", stdout=io.StringIO())
    assert [m.objects.count() for m in models] == counts
    assert counts[0] == 6
    assert counts[1] == 3  # Lotte, Sam, Noah
    # Scenario 5: a consent and a share; scenario 6: a running NAFT trajectory with a report to the CLB.
    assert Share.objects.count() == 1
    assert Consent.objects.get().pupil.user.username == "lotte"
    assert Trajectory.objects.get().state == "running"
    assert ProgressReport.objects.count() == 1
    # Scenarios 1-2: Noah changes school; both handovers wait for his objection (T-CLB-2, he is 13) ...
    noah = Pupil.objects.get(user__username="noah")
    assert sorted(Handover.objects.filter(pupil=noah).values_list("kind", "state")) == [
        ("clb", "waiting"),
        ("school", "waiting"),
    ]
    assert Notice.objects.filter(handover__pupil=noah).exists()
    # ... while school A reads his verslag at once (T-SCH-2), not his discipline file (T-SCH-4) or CLB Y's notes.
    care_a = get_user_model().objects.get(username="care.a")
    visible = set(item_list_for_user(user=care_a, pupil_id=noah.pk).values_list("category", flat=True))
    assert visible == {"report"}
    text = out.getvalue()
    for login in (
        "care.a",
        "teacher.lotte",
        "teacher.other",
        "worker.x",
        "worker.x.other",
        "doctor.x",
        "coach.n",
        "lotte",
    ):
        assert login in text
    assert "Token" in text


@pytest.mark.django_db
def test_healthz_reports_database_and_broker() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_healthz_answers_503_when_the_broker_is_down() -> None:
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = "amqp://guest:guest@127.0.0.1:1//"
    try:
        response = Client().get("/healthz")
    finally:
        celery_app.conf.broker_url = previous
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "down"


@override_settings(DEBUG=False)
def test_production_settings_refuse_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    sys.modules.pop("config.settings.production", None)
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        importlib.import_module("config.settings.production")


def test_production_settings_refuse_the_development_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("DJANGO_SECRET_KEY", "x" * 64)
    monkeypatch.delenv("LP_KEKS", raising=False)
    monkeypatch.delenv("LP_BLIND_INDEX_KEY", raising=False)
    for name in ("config.settings.production", "config.settings.base"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImproperlyConfigured, match="development keyring"):
        importlib.import_module("config.settings.production")
