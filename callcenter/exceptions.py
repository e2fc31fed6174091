"""Domain errors. Interfaces map them to their own idiom (HTTP 409, an admin
message, a command error) instead of each re-deciding what is allowed."""

from __future__ import annotations


class DomainError(Exception):
    """A requested transition is not allowed in the current state."""

    code = "invalid_state"
    status_code = 409

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class BatchCancelledError(DomainError):
    code = "batch_cancelled"


class BatchDeletedError(DomainError):
    code = "batch_deleted"


class BatchPausedByStaffError(DomainError):
    """Staff paused the batch (a supervisor stopping a campaign): only staff,
    or an operator's command, may resume it."""

    code = "paused_by_staff"
    status_code = 403
