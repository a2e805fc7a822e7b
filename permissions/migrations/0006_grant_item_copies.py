"""Copy the item's immutable columns onto its grants, and index an organisation's grants newest item first.

The copies are filled for existing rows in the same migration (one set-based UPDATE), then made NOT NULL.
"""

from django.db import migrations, models

COPIES = {
    "item_pupil_id": "pupil_id",
    "item_category": "category",
    "item_health": "health",
    "item_created_at": "created_at",
}


def fill_copies(apps, schema_editor):
    connection = schema_editor.connection
    grant = connection.ops.quote_name("permissions_grant")
    item = connection.ops.quote_name("exchange_pupilitem")
    if connection.vendor == "postgresql":
        assignments = ", ".join(f"{copy} = i.{column}" for copy, column in COPIES.items())
        sql = f"UPDATE {grant} g SET {assignments} FROM {item} i WHERE i.id = g.item_id"
    else:
        assignments = ", ".join(
            f"{copy} = (SELECT i.{column} FROM {item} i WHERE i.id = {grant}.item_id)" for copy, column in COPIES.items()
        )
        sql = f"UPDATE {grant} SET {assignments}"
    with connection.cursor() as cursor:
        cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("permissions", "0005_lean_ledger_indexes"),
        ("exchange", "0006_lean_ledger_indexes"),
    ]

    operations = [
        migrations.AddField(model_name="grant", name="item_pupil_id", field=models.UUIDField(null=True)),
        migrations.AddField(model_name="grant", name="item_category", field=models.CharField(max_length=30, null=True)),
        migrations.AddField(model_name="grant", name="item_health", field=models.BooleanField(null=True)),
        migrations.AddField(model_name="grant", name="item_created_at", field=models.DateTimeField(null=True)),
        migrations.RunPython(fill_copies, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(model_name="grant", name="item_pupil_id", field=models.UUIDField()),
        migrations.AlterField(model_name="grant", name="item_category", field=models.CharField(max_length=30)),
        migrations.AlterField(model_name="grant", name="item_health", field=models.BooleanField()),
        migrations.AlterField(model_name="grant", name="item_created_at", field=models.DateTimeField()),
        migrations.RemoveIndex(model_name="grant", name="grant_org_item_idx"),
        migrations.AddIndex(
            model_name="grant",
            index=models.Index(fields=["organisation", "-item_created_at", "item"], name="grant_org_feed_idx"),
        ),
    ]
