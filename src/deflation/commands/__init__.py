"""Sub-commands of the ``deflation`` command line (one module each)."""
