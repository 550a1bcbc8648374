"""The ``dmenet-geo`` command line: one module per command, wired together in :mod:`.main`."""
