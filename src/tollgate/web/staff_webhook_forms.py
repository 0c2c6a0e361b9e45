"""Forms of the staff webhook pages. They check what was typed; the services decide what is allowed
(where a URL may lead, which event types exist)."""

from __future__ import annotations

from django import forms

from tollgate.core.events import EVENT_TYPES
from tollgate.integrations.webhook_targets import URL_MAX_LENGTH


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="URL",
        max_length=URL_MAX_LENGTH,
        help_text="Where the events are sent (POST): an https:// address on the public internet.",
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    description = forms.CharField(
        label="Description",
        max_length=200,
        required=False,
        help_text="What receives these events, for the people who read this list.",
    )
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=[(name, name) for name in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Choose none to receive every event, including types added later.",
    )


class RotateForm(forms.Form):
    replacing = forms.CharField(widget=forms.HiddenInput, max_length=64)
    OVERLAPS = (
        ("24", "24 hours"),
        ("1", "1 hour"),
        ("72", "3 days"),
        ("168", "7 days"),
        ("0", "No overlap: the current secret stops signing at once"),
    )

    overlap_hours = forms.TypedChoiceField(
        label="Keep signing with the current secret for",
        choices=OVERLAPS,
        coerce=int,
        initial="24",
        widget=forms.RadioSelect,
        help_text="Meanwhile each request carries both signatures, so the receiver can switch to "
        "the new secret without missing one.",
    )
