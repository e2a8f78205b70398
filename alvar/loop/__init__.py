"""The loop as a running system, joining the ML backend and the generator: a project's set-up (`alvar init`), the
batch selection and its scoring fan-out, the reconciliation sweep, the worker supervisor, the stack of services,
status and coverage, and the export with its dataset card. The command line (``scripts/``) calls these."""
