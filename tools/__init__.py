"""The project's own command lines (``python -m tools.<name>``), apart from the model zoo's root scripts."""
