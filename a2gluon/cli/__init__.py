"""Command-line interfaces: argument parsing only, each a thin shell over the library layers."""
