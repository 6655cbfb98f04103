"""Kept only for the two engines that still import `locate_model` from here.

``engines/whisper.py`` and ``engines/resemblyzer.py`` were being edited
elsewhere while the model store was split into `hushgate.models.catalogue`,
`~hushgate.models.locate` and `~hushgate.models.pull`; once they import
`hushgate.models.locate` this module goes.
"""

from __future__ import annotations

from hushgate.models.locate import locate_model

__all__ = ["locate_model"]
