"""Southbound drivers: the contract (base), the registry, the built-in drivers and the conformance kit."""
