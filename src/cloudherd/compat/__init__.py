"""Drop-in names for the tools cloudherd replaces: `cloudherd.compat.smartdc` (py-smartdc),
`cloudherd.compat.ogc` (OGC)."""
