from django.db import migrations


def features_for_existing_plans(apps, schema_editor):
    """Every feature key plans already use gets a name made from the key; loading a catalog file
    with [[features]] entries (or the admin) then gives it a better one."""
    Plan = apps.get_model("catalog", "Plan")
    Feature = apps.get_model("catalog", "Feature")
    codes = {code for features in Plan.objects.values_list("features", flat=True) for code in features}
    for code in sorted(codes):
        Feature.objects.get_or_create(
            code=code, defaults={"name": code.replace("_", " ").capitalize()}
        )


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_features_and_display_order")]

    operations = [migrations.RunPython(features_for_existing_plans, migrations.RunPython.noop)]
