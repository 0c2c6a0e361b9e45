"""Staff console: download the audit trail of a window with its signed manifest (a zip of the
export and ``<file>.manifest.json``, as ``manage.py audit_export`` writes them). The download is
itself audited (``staff.viewed_export``)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from tollgate.audit.export import FORMATS, audit_export
from tollgate.audit.services import audit_access_record
from tollgate.web.staff_views import staff_required


class AuditExportForm(forms.Form):
    since = forms.DateField(label="From (UTC, included)")
    until = forms.DateField(label="To (UTC, excluded)")
    format = forms.ChoiceField(choices=[(name, name) for name in FORMATS], initial="jsonl")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise forms.ValidationError("The start must be before the end.")
        return data


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


@require_safe
@staff_required
def audit_export_download(request: HttpRequest) -> HttpResponse:
    form = AuditExportForm(request.GET or None)
    if not form.is_valid():
        status = 422 if request.GET else 200
        return render(request, "staff/audit_export.html", {"form": form}, status=status)
    since, until = _midnight(form.cleaned_data["since"]), _midnight(form.cleaned_data["until"])
    fmt = form.cleaned_data["format"]
    name = f"audit-{since:%Y%m%d}-{until:%Y%m%d}.{fmt}"
    audit_access_record(
        viewer=request.user,
        action="staff.viewed_export",
        details={"export": "audit", "since": since.isoformat(), "until": until.isoformat()},
    )
    content = io.BytesIO()
    result = audit_export(since=since, until=until, fmt=fmt, out=content, filename=name)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(name, content.getvalue())
        bundle.writestr(f"{name}.manifest.json", json.dumps(result.manifest, indent=2) + "\n")
    response = HttpResponse(archive.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    return response
