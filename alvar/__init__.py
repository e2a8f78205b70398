"""alvar: Active Learning-guided VARiations, a dataset-building plugin for Label Studio."""

__version__ = "0.1.0"
