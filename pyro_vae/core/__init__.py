"""The ground every other layer stands on, importing none of them: errors, checked option values,
the registries of interchangeable parts (every family, with where its built-in parts live),
users' plugins, numerics, files written whole, several processes, interrupts, and how
pyro_vae's names are imported (lazily, and by their old flat paths).

Its modules are imported by name (``from pyro_vae.core.errors import ConfigError``).
"""
