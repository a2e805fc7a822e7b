"""Seed the Flemish public holidays and school holidays of 2026-2027 and 2027-2028.

School holidays follow the rules of the BVR of 17 April 1991 (herfst: the week of 1 November;
kerst: two weeks from the Monday of the week of Christmas; krokus: the 7th Monday before Easter;
paas: two weeks from the first Monday of April, the Monday after Easter when Easter falls in March,
the 2nd Monday before Easter when it falls after 15 April; zomer: 1 July to 31 August). Operators
add later years, and local free days, in the admin.
"""

from datetime import date

from django.db import migrations

PUBLIC = [
    ("Wapenstilstand", date(2026, 11, 11)),
    ("Kerstmis", date(2026, 12, 25)),
    ("Nieuwjaar", date(2027, 1, 1)),
    ("Paasmaandag", date(2027, 3, 29)),
    ("Dag van de Arbeid", date(2027, 5, 1)),
    ("Hemelvaart", date(2027, 5, 6)),
    ("Pinkstermaandag", date(2027, 5, 17)),
    ("Feest van de Vlaamse Gemeenschap", date(2027, 7, 11)),
    ("Nationale feestdag", date(2027, 7, 21)),
    ("Onze-Lieve-Vrouw-Hemelvaart", date(2027, 8, 15)),
    ("Allerheiligen", date(2027, 11, 1)),
    ("Wapenstilstand", date(2027, 11, 11)),
    ("Kerstmis", date(2027, 12, 25)),
    ("Nieuwjaar", date(2028, 1, 1)),
    ("Paasmaandag", date(2028, 4, 17)),
    ("Dag van de Arbeid", date(2028, 5, 1)),
    ("Hemelvaart", date(2028, 5, 25)),
    ("Pinkstermaandag", date(2028, 6, 5)),
]
SCHOOL = [
    ("Herfstvakantie", date(2026, 11, 2), date(2026, 11, 8)),
    ("Kerstvakantie", date(2026, 12, 21), date(2027, 1, 3)),
    ("Krokusvakantie", date(2027, 2, 8), date(2027, 2, 14)),
    ("Paasvakantie", date(2027, 3, 29), date(2027, 4, 11)),
    ("Vrijdag na Hemelvaart", date(2027, 5, 7), date(2027, 5, 7)),
    ("Zomervakantie", date(2027, 7, 1), date(2027, 8, 31)),
    ("Herfstvakantie", date(2027, 11, 1), date(2027, 11, 7)),
    ("Kerstvakantie", date(2027, 12, 27), date(2028, 1, 9)),
    ("Krokusvakantie", date(2028, 2, 28), date(2028, 3, 5)),
    ("Paasvakantie", date(2028, 4, 3), date(2028, 4, 16)),
    ("Vrijdag na Hemelvaart", date(2028, 5, 26), date(2028, 5, 26)),
    ("Zomervakantie", date(2028, 7, 1), date(2028, 8, 31)),
]


def seed(apps, schema_editor):
    period = apps.get_model("workdays", "NonWorkingPeriod")
    period.objects.bulk_create(
        [period(name=name, kind="public_holiday", first_day=day, last_day=day) for name, day in PUBLIC]
        + [period(name=name, kind="school_holiday", first_day=first, last_day=last) for name, first, last in SCHOOL]
    )


def unseed(apps, schema_editor):
    apps.get_model("workdays", "NonWorkingPeriod").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("workdays", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
