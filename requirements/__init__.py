"""The lock files, shipped with the package: an installed alvar builds Label Studio's environment from
``label-studio.txt`` (:mod:`alvar.loop.label_studio_env`). How to refresh them: the README's "Locked
environments"."""
