"""Training MDX23C (optionally with CMX) from MSST-style YAML configs: ``stemforge train``."""
