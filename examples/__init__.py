"""Examples of using the project from other programs (not part of the installed package)."""
