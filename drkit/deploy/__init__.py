"""Deployment: turning plans into the objects a scheduler runs (Kubernetes CronJobs and the
ConfigMap holding the plans). Renders text only; it never talks to a cluster."""
