"""Create the DOMAIN.md personas: schools A, B (and basisschool C), CLBs X and Y, NAFT provider N,
Lotte (14) and Sam (9), their parents, and staff in every role. Safe to run twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from exchange import services
from exchange.domain import national_number_for, school_year_of
from exchange.models import (
    Category,
    CooperationAgreement,
    Enrolment,
    ItemKind,
    Level,
    Organisation,
    OrganisationKind,
    Pupil,
    PupilItem,
    PupilParent,
    Role,
    SchoolKind,
)

DEMO_PASSWORD = "leerlingenpaspoort-demo"  # noqa: S105 - printed on purpose: demo accounts only


@dataclass(frozen=True)
class OrgSpec:
    key: str
    kind: str
    number: str
    name: str
    school_kind: str = ""


ORGANISATIONS = [
    OrgSpec("A", OrganisationKind.SCHOOL, "030001", "School A – Sint-Jozefsinstituut", SchoolKind.SECUNDAIR),
    OrgSpec("B", OrganisationKind.SCHOOL, "030002", "School B – Atheneum Noord", SchoolKind.SECUNDAIR),
    OrgSpec("C", OrganisationKind.SCHOOL, "030003", "School C – Basisschool De Linde", SchoolKind.BASIS),
    OrgSpec("X", OrganisationKind.CLB, "100001", "CLB X – Vrij CLB Midden"),
    OrgSpec("Y", OrganisationKind.CLB, "100002", "CLB Y – GO! CLB Noord"),
    OrgSpec("N", OrganisationKind.NAFT, "900001", "NAFT-aanbieder N – Trajectwerking Kompas"),
]

AGREEMENTS = [("A", "X"), ("B", "Y"), ("C", "X")]

# username, first name, last name, organisation key, role, what the persona is for
STAFF = [
    ("director.a", "Dirk", "Directeur", "A", Role.SCHOOL_DIRECTOR, "director of school A"),
    ("care.a", "Zoë", "Zorg", "A", Role.CARE_TEAM, "care coordinator of school A"),
    ("teacher.lotte", "Tom", "Leraar", "A", Role.TEACHER, "teacher who teaches Lotte"),
    ("teacher.other", "Ine", "Anders", "A", Role.TEACHER, "teacher who does not teach Lotte"),
    ("admin.a", "Ahmed", "Administratie", "A", Role.ADMINISTRATION, "administration of school A"),
    ("director.b", "Bea", "Directeur", "B", Role.SCHOOL_DIRECTOR, "director of school B"),
    ("care.b", "Bram", "Zorg", "B", Role.CARE_TEAM, "care coordinator of school B"),
    ("teacher.b", "Tine", "Leraar", "B", Role.TEACHER, "teacher at school B"),
    ("admin.b", "Bart", "Administratie", "B", Role.ADMINISTRATION, "administration of school B"),
    ("admin.c", "Carla", "Administratie", "C", Role.ADMINISTRATION, "administration of basisschool C"),
    ("care.c", "Cas", "Zorg", "C", Role.CARE_TEAM, "care coordinator of basisschool C"),
    ("director.x", "Xavier", "Directeur", "X", Role.CLB_DIRECTOR, "director of CLB X"),
    ("worker.x", "Wendy", "Begeleider", "X", Role.CLB_WORKER, "CLB X worker involved with Lotte"),
    ("worker.x.other", "Wim", "Nietbetrokken", "X", Role.CLB_WORKER, "CLB X worker not involved"),
    ("doctor.x", "Dora", "Arts", "X", Role.CLB_MEDICAL, "CLB X doctor"),
    ("director.y", "Yves", "Directeur", "Y", Role.CLB_DIRECTOR, "director of CLB Y"),
    ("worker.y", "Yasmine", "Begeleider", "Y", Role.CLB_WORKER, "CLB Y worker"),
    ("doctor.y", "Youri", "Arts", "Y", Role.CLB_MEDICAL, "CLB Y doctor"),
    ("coach.n", "Nora", "Coach", "N", Role.NAFT_COACH, "NAFT coach of provider N"),
]

LOTTE_BIRTH = date(2012, 3, 15)
SAM_BIRTH = date(2017, 6, 2)
NOAH_BIRTH = date(2013, 1, 20)


class Command(BaseCommand):
    help = "Create the demo personas of DOMAIN.md and print every login and API token. Safe to run twice."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            rows = self._seed()
        self.stdout.write(self.style.SUCCESS("Demo data ready. Password for every demo account: " + DEMO_PASSWORD))
        width = max(len(r[0]) for r in rows)
        self.stdout.write(f"{'login'.ljust(width)}  {'API token'.ljust(40)}  who")
        for username, token, who in rows:
            self.stdout.write(f"{username.ljust(width)}  {token}  {who}")
        self.stdout.write("Use a token as: Authorization: Token <token>")

    def _user(self, username: str, first: str, last: str, **extra: Any) -> tuple[Any, str]:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last, **extra}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
        return user, token.key

    def _seed(self) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []
        orgs: dict[str, Organisation] = {}
        for spec in ORGANISATIONS:
            org = Organisation.objects.filter(kind=spec.kind, official_number=spec.number).first()
            orgs[spec.key] = org or services.organisation_create(
                kind=spec.kind, official_number=spec.number, name=spec.name, school_kind=spec.school_kind
            )
        start_of_year = date(int(school_year_of(timezone.localdate())[:4]), 9, 1)
        for school_key, clb_key in AGREEMENTS:
            if not CooperationAgreement.objects.filter(school=orgs[school_key]).exists():
                services.agreement_create(school=orgs[school_key], clb=orgs[clb_key], start=date(2020, 9, 1))

        _operator, key = self._user("operator", "Olga", "Operator", is_staff=True, is_superuser=True)
        rows.append(("operator", key, "platform operator (admin site, agreements)"))
        for username, first, last, org_key, role, who in STAFF:
            user, key = self._user(username, first, last)
            services.membership_grant(user=user, organisation=orgs[org_key], role=role)
            rows.append((username, key, who))

        lotte = self._pupil(LOTTE_BIRTH, 101, "Lotte", "Peeters", "Kerkstraat 1, 3000 Leuven")
        sam = self._pupil(SAM_BIRTH, 205, "Sam", "Janssens", "Molenweg 7, 3010 Kessel-Lo")
        lotte_user, key = self._user("lotte", "Lotte", "Peeters")
        if lotte.user_id is None:
            lotte.user = lotte_user
            lotte.save(update_fields=["user"])
        rows.append(("lotte", key, "Lotte (14), pupil at school A"))

        for pupil, school, level in ((lotte, orgs["A"], Level.SECUNDAIR), (sam, orgs["C"], Level.BASIS)):
            if not Enrolment.objects.filter(pupil=pupil, school=school).exists():
                services.enrolment_register(pupil=pupil, school=school, level=level, start=start_of_year)

        for username, first, last, pupil, who in (
            ("parent.lotte", "An", "Peeters", lotte, "mother of Lotte"),
            ("parent.sam", "Sofie", "Janssens", sam, "mother of Sam (9)"),
        ):
            user, key = self._user(username, first, last, email=f"{username}@example.org")
            if not PupilParent.objects.filter(pupil=pupil, user=user).exists():
                services.parent_add(pupil=pupil, first_name=first, last_name=last, email=user.email, user=user)
            rows.append((username, key, who))
        if not PupilParent.objects.filter(pupil=lotte, user__isnull=True).exists():
            services.parent_add(pupil=lotte, first_name="Jan", last_name="Peeters", email="jan.peeters@example.org")
        self._need_to_know(orgs, lotte)
        noah_user, key = self._user("noah", "Noah", "Claes")
        rows.append(("noah", key, "Noah (13), changing from school B to school A: handover waiting for objections"))
        self._stories(orgs, lotte, noah_user, start_of_year)
        return rows

    def _need_to_know(self, orgs: dict[str, Organisation], lotte: Pupil) -> None:
        """Involvement, teaching and a few encrypted items, so the demo shows need to know at work."""
        from exchange.files import item_create
        from permissions.services import involvement_assign, teaching_assign

        users = {u.username: u for u in get_user_model().objects.filter(username__in=[s[0] for s in STAFF])}
        involvement_assign(pupil=lotte, clb=orgs["X"], user=users["worker.x"], assigned_by=users["director.x"])
        teaching_assign(school=orgs["A"], teacher=users["teacher.lotte"], pupil=lotte, assigned_by=users["director.a"])
        if PupilItem.objects.filter(pupil=lotte).exists():
            return
        today = timezone.localdate()
        item_create(
            pupil=lotte,
            holder=orgs["X"],
            category=Category.REPORT,
            kind=ItemKind.GEMOTIVEERD_VERSLAG,
            title="Gemotiveerd verslag – redelijke aanpassingen",
            body="Extra tijd bij toetsen; dyslexie.",
            report_type="gemotiveerd verslag",
            report_valid_from=today,
            author=users["worker.x"],
        )
        item_create(
            pupil=lotte,
            holder=orgs["X"],
            category=Category.GUIDANCE,
            kind=ItemKind.NOTE,
            title="Intakegesprek",
            body="Gesprek met Lotte over schoolmoeheid.",
            author=users["worker.x"],
        )
        item_create(
            pupil=lotte,
            holder=orgs["X"],
            category=Category.VACCINATION,
            kind=ItemKind.RECORD,
            title="Vaccinatie HPV",
            body="Dosis 1 toegediend.",
            author=users["doctor.x"],
        )
        item_create(
            pupil=lotte,
            holder=orgs["A"],
            category=Category.CAREER,
            kind=ItemKind.DOCUMENT,
            title="Beslissing klassenraad juni",
            body="A-attest.",
            author=users["care.a"],
        )

    def _stories(self, orgs: dict[str, Organisation], lotte: Pupil, noah_user: Any, start_of_year: date) -> None:
        """A consent and share (scenario 5), a running NAFT trajectory with a progress report (scenario 6) and a
        change of school whose handover waits for objections (scenarios 1-2), each made once."""
        from consent.models import Consent
        from consent.services import consent_record, share_create
        from exchange.files import item_create
        from exchange.models import Trajectory
        from exchange.naft import progress_report, trajectory_apply, trajectory_decide

        users = {u.username: u for u in get_user_model().objects.filter(username__in=[s[0] for s in STAFF])}
        today = timezone.localdate()
        if not Consent.objects.filter(pupil=lotte).exists():
            # S-1: Lotte (14) agrees that CLB X shares a summary with school A; worker.x writes it.
            consent = consent_record(
                pupil=lotte,
                clb=orgs["X"],
                given_by="pupil",
                parent=None,
                recorded_by=users["worker.x"],
                recorded_via="oral",
                purpose="support_at_school",
                recipient=orgs["A"],
                scope_kind="summary",
            )
            share_create(
                pupil=lotte,
                clb=orgs["X"],
                school=orgs["A"],
                consent=consent,
                created_by=users["worker.x"],
                summary_title="Afspraken voor de klas",
                summary_body="Extra tijd bij toetsen; vooraan zitten.",
            )
        if not Trajectory.objects.filter(pupil=lotte).exists():
            # N-1 / N-2: CLB X applies for a NAFT trajectory at provider N; the coach accepts and reports to the CLB.
            trajectory = trajectory_apply(
                pupil=lotte,
                clb=orgs["X"],
                provider=orgs["N"],
                applied_by=users["worker.x"],
                goals=["Elke dag aanwezig", "Afspraken nakomen"],
                referral="Lotte haakt af sinds de herfstvakantie; motivatie laag.",
                start=today,
                planned_end=today + timedelta(days=90),
                school_agreed_on=today,
                pupil_agreed_on=today,
                parents_agreed_on=today,
            )
            trajectory = trajectory_decide(trajectory=trajectory, by=users["coach.n"], accept=True)
            progress_report(
                trajectory=trajectory,
                by=users["coach.n"],
                period_start=today - timedelta(days=7),
                period_end=today,
                days_present=4,
                days_planned=5,
                goals=[{"goal": 1, "progress": "on_track"}, {"goal": 2, "progress": "behind", "note": "te laat"}],
                actions="Huisbezoek",
                narrative="Goede week; maandag te laat.",
            )
        noah = self._pupil(NOAH_BIRTH, 307, "Noah", "Claes", "Stationsstraat 12, 3000 Leuven")
        if noah.user_id is None:
            noah.user = noah_user
            noah.save(update_fields=["user"])
        if Enrolment.objects.filter(pupil=noah).exists():
            return
        # T-CLB-1 / T-SCH-1: Noah was at school B (CLB Y) and enrols at school A today. The handovers are planned
        # at once: the verslag moves to A now (T-SCH-2), the CLB dossier and the career data wait for Noah's
        # objection window (he is 13: he decides, T-CLB-2); discipline never moves (T-SCH-4).
        services.enrolment_register(pupil=noah, school=orgs["B"], level=Level.SECUNDAIR, start=start_of_year)
        # The school's notice goes to the parents (CAP-3), the CLB's to Noah himself: both are sent by e-mail.
        services.parent_add(pupil=noah, first_name="Els", last_name="Claes", email="els.claes@example.org")
        for holder, category, kind, title, body, author in (
            ("Y", Category.GUIDANCE, ItemKind.NOTE, "Begeleidingsgesprek", "Faalangst bij toetsen.", "worker.y"),
            ("B", Category.CAREER, ItemKind.DOCUMENT, "Klassenraad december", "Remediëring wiskunde.", "care.b"),
            ("B", Category.DISCIPLINE, ItemKind.NOTE, "Tuchtdossier", "Strafstudie na ruzie.", "care.b"),
        ):
            item_create(
                pupil=noah,
                holder=orgs[holder],
                category=category,
                kind=kind,
                title=title,
                body=body,
                author=users[author],
            )
        item_create(
            pupil=noah,
            holder=orgs["Y"],
            category=Category.REPORT,
            kind=ItemKind.VERSLAG,
            title="Verslag type basisaanbod",
            body="Toegang tot het gewoon onderwijs met aanpassingen.",
            report_type="type basisaanbod",
            report_valid_from=start_of_year,
            author=users["worker.y"],
        )
        services.enrolment_register(
            pupil=noah, school=orgs["A"], level=Level.SECUNDAIR, start=max(today, start_of_year), ends_previous=True
        )

    def _pupil(self, birth: date, serial: int, first: str, last: str, address: str) -> Pupil:
        number = national_number_for(birth, serial)
        return services.pupil_find_or_register(
            national_number=number, first_name=first, last_name=last, birth_date=birth, address=address
        )
