"""sds: text to 3D by Score Distillation Sampling (prompt -> NeRF -> textured mesh).

Importing the package imports nothing heavy; ``sds.cli`` is the command, ``docs/architecture.md`` the map.
"""

__version__ = "0.3.0"
