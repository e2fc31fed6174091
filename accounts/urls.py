from __future__ import annotations

from django.urls import path

from accounts.views import AccountCreditsView

app_name = "accounts"

urlpatterns = [
    path("credits", AccountCreditsView.as_view(), name="credits"),
]
