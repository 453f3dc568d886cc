"""Version numbers: of the package, and of the config format a run directory's config.json holds.

A leaf module, so that the lowest layers (the run directory) can name them without importing the
package (whose `__init__` sits above everything) or the config module (which sits above the registries).
"""

__version__ = "0.1.0"
CONFIG_VERSION = 1  # bumped when config.json changes in a way an older semireg cannot read
