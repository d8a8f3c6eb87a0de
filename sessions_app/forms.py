"""Forms shared by the console and the admin."""

from django import forms
from django.utils.translation import gettext_lazy


class CloseForm(forms.Form):
    """Why staff closed someone's session: shown to that person on their page."""

    note = forms.CharField(
        label=gettext_lazy("Reason shown to the person"),
        max_length=300,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=gettext_lazy("For example: “The service restarts for maintenance.”"),
    )
