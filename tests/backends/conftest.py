"""The fake-backend fixtures (``lago``, ``lago_server`` …) live in ``tests/conftest.py``,
shared with the delivery tests."""
