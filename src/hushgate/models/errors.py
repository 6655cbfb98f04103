"""The one failure the model store reports.

It lives here, at the bottom of the import graph, because both the store and
the engines raise it (engines re-export it from ``hushgate.engines.base``);
``hushgate.models`` never imports ``hushgate.engines``.
"""

from __future__ import annotations


class ModelNotFound(Exception):
    """A configured model is not installed where it was looked for.

    The message names what is missing and how to install it; it is safe to show a client.
    """
