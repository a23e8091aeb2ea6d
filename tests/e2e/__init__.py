"""The real-deployment suite (a package, so its conftest never shadows the suite's own)."""
