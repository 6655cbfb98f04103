"""Model catalogue and store: which models hushgate knows, where they are, how to get them.

``catalogue`` reads ``catalogue.json`` (shipped in this package) into entries whose
``sources`` say where each model comes from; ``locate`` finds installed models
(engines use it, and it never writes); ``pull`` installs them, with ``download``,
``archives``, ``wheels`` and ``pull_steps`` doing the parts; ``commands`` is the
``hushgate models`` command line. No weights live here.
"""
