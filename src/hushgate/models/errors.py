"""The failures the model store reports.

They live here, at the bottom of the import graph: every module of the store
raises them, and the engines raise `ModelNotFound` too (re-exported from
``hushgate.engines.base``); ``hushgate.models`` never imports ``hushgate.engines``.
"""

from __future__ import annotations


class ModelNotFound(Exception):
    """A configured model is not installed where it was looked for.

    The message names what is missing and how to install it; it is safe to show a client.
    """


class CatalogueError(ValueError):
    """The catalogue file is malformed."""


class PullError(Exception):
    """A model could not be installed; the message says why and what to do."""


class ChecksumMismatch(PullError):
    """A downloaded file's SHA-256 differs from the catalogue's."""


class UnsafeArchive(PullError):
    """An archive holds a member that would land outside its target directory."""


class ManualInstallRequired(PullError):
    """The model comes from the system's package manager; ``command`` installs it."""

    def __init__(self, message: str, *, command: str) -> None:
        super().__init__(message)
        self.command = command
