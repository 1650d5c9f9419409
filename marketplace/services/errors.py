"""Domain errors raised by services; routes turn them into messages or status codes."""

from __future__ import annotations


class DomainError(Exception):
    """A rule was broken. ``message`` is shown to the user (Chinese)."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PermissionDenied(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class InvalidTransition(DomainError):
    """A workflow step that is not allowed from the entry's current state."""

    status_code = 409


class ValidationFailed(DomainError):
    """Field-level problems found by a business rule: ``errors`` maps field name to message."""

    status_code = 400

    def __init__(self, errors: dict[str, str]):
        super().__init__("；".join(errors.values()))
        self.errors = errors
