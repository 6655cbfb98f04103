"""Model catalogue and store: which models hushgate knows, where they are, how to get them.

``hushgate.models.store`` finds and installs models; ``hushgate.models.commands`` is the
``hushgate models`` command line. The catalogue itself is the data file
``catalogue.json`` shipped in this package. No weights live here.
"""
