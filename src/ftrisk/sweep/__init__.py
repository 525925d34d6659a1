"""Sweeps: grids and budget curves of attack settings, and worst-case search."""
