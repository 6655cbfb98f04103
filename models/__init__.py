"""Model catalogue and store: which models speech-gateway knows, where they are, how to get them.

``models.store`` finds and installs models; ``models.commands`` is the
``speech-gateway models`` command line. The catalogue itself is the data file
``catalogue.json`` shipped in this package. No weights live here.
"""
