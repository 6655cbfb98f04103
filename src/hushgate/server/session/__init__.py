"""A ``/v1/stream`` session, in parts.

``connection`` runs one client's lifecycle and tasks; ``listening`` turns its
audio into utterances, text and speaker decisions over ``recognition`` (the
speech-to-text core ``/vosk`` shares); ``speaking`` translates and synthesizes;
``voiceprints`` enrolls, verifies and identifies; ``calls`` moves every engine
call to a thread and waits for it before state is freed. The engines are the
server's, shared (``hushgate.server.hub``); these objects are light and live
only as long as their connection.
"""

from hushgate.server.session.connection import Session, State

__all__ = ["Session", "State"]
