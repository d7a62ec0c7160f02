"""Plans: the YAML schema (one source of truth), loading with file:line:path errors, and the
annotated sample plan."""
