"""ironserve: provision bare GPU servers into a private DeepSeek inference service."""

__version__ = "0.1.0"
