"""Built-in presets (TOML), selected with ``rnnkit train --preset NAME``."""
