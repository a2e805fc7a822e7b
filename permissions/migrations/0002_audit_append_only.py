"""ACC-5: on PostgreSQL, the audit table rejects UPDATE and DELETE (append-only).

TRUNCATE is not covered by a trigger on purpose: it needs table ownership, which the application's
database role should not have in production, and the test runner truncates tables between
transactional tests. A truncated table is still detected by ``audit_verify`` (its head row).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION permissions_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on permissions_auditevent is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER permissions_auditevent_no_update
    BEFORE UPDATE OR DELETE ON permissions_auditevent
    FOR EACH ROW EXECUTE FUNCTION permissions_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS permissions_auditevent_no_update ON permissions_auditevent;
DROP FUNCTION IF EXISTS permissions_audit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("permissions", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
