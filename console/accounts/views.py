"""The one login page for members and staff, sending each where they may go."""

from __future__ import annotations

from django.contrib.auth import REDIRECT_FIELD_NAME

from console.accounts.landing import landing_url
from console.ops.login_throttle import ThrottledLoginView


class LoginView(ThrottledLoginView):
    """Throttled like every login; afterwards `next` if the user may open it, else chat (members) or console (staff)."""

    def get_success_url(self) -> str:
        """Also where an already logged-in visitor of the login page is sent (redirect_authenticated_user)."""
        next_url = self.request.POST.get(REDIRECT_FIELD_NAME) or self.request.GET.get(REDIRECT_FIELD_NAME, "")
        return landing_url(self.request, self.request.user, next_url)

