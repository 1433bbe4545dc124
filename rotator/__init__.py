"""monite-secret-rotator: keeps Monite webhook signing secrets fresh in HashiCorp Vault."""

__version__ = "0.1.0"
