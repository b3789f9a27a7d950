"""The mangakai command-line client."""
