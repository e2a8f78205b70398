"""The `alvar` commands, one module per concept; :mod:`alvar.scripts.cli` joins them into one command line."""
