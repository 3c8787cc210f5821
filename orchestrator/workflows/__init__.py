"""Deterministic workflow code: the journey interpreter and its public building blocks."""
