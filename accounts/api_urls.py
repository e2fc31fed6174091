"""The accounts' part of /api/v1/ (included by callcenter/urls.py): staff
create accounts; a member reads and adds the account's credits."""

from __future__ import annotations

from accounts.views import AccountCreditsView, AccountListView
from callcenter.api import both_slashes

urlpatterns = [
    # Staff: POST /api/v1/accounts creates an account.
    *both_slashes("accounts", AccountListView.as_view(), "accounts"),
    # GET/POST /api/v1/account/credits.
    *both_slashes("account/credits", AccountCreditsView.as_view(), "credits"),
]
