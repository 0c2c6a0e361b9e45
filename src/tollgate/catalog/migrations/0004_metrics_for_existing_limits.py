from django.db import migrations


def metrics_for_existing_limits(apps, schema_editor):
    """Every limit key plans already use becomes a metric that resets each month; loading a
    catalog file with [[metrics]] entries then refines them."""
    Plan = apps.get_model("catalog", "Plan")
    Metric = apps.get_model("catalog", "Metric")
    codes = {code for limits in Plan.objects.values_list("limits", flat=True) for code in limits}
    for code in sorted(codes):
        Metric.objects.get_or_create(
            code=code, defaults={"name": code.replace("_", " ").capitalize(), "reset": "period"}
        )


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_metrics_and_api_rate_limits")]

    operations = [migrations.RunPython(metrics_for_existing_limits, migrations.RunPython.noop)]
