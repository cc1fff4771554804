"""t2t's built-in plugins, registered through the `t2t` entry-point group like any other
(pyproject.toml names each module)."""
