"""kubetally: usage-based metering for multi-tenant Kubernetes GPU clouds."""

__version__ = "0.1.0"
