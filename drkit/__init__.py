"""drkit: encrypted multi-region backups of API backends, restore with failover, and drills
that prove recovery with measured RTO and RPO.

Layers, one way only: cli -> plan -> actions -> sources / crypto / stores / catalog / sandboxes.
"""

__version__ = "0.2.0.dev0"
