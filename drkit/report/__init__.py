"""Status and compliance reports: figures from the catalog, rendered as text, JSON, Markdown
and self-contained HTML."""
