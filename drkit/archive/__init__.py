"""Continuous WAL archiving for point-in-time restore: the archiver that ships every WAL
segment, partial segment and timeline history file of a PostgreSQL source to every store
(``archiver``), where and how WAL objects are sealed in stores (``objects``), WAL names and
positions (``walnames``), the recoverable window each store holds (``window``), and fetching
WAL back with store failover (``fetch``). Beside ``drkit.repository``, which writes snapshots
(base backups are snapshots); see docs/pitr.md."""
