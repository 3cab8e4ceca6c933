"""The ``pyro-vae`` command: its parser (flags generated from the config sections and the
registries) and what each command does (:mod:`pyro_vae.cli.main`). Nothing here is imported
by the library."""
