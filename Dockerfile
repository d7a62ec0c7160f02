# drkit production image: slim Python, non-root user, drkit with restic and the PostgreSQL and
# MariaDB client tools. Build where a Docker engine runs (not on the CI machine, which has none):
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t drkit:0.1.0 .
#
# Base: Debian 13 (trixie), and only Debian's own packages (no third-party apt repository):
# - PostgreSQL 17 client and server programs. pg_dump dumps servers of its own major version
#   and older (back to 9.2), so one pg_dump 17 covers PostgreSQL 13 to 17 sources; drkit
#   prefers /usr/lib/postgresql/<server major>/bin when a matching client is installed, and
#   `drkit check` refuses a pg_dump older than the server. initdb/pg_ctl 17 start the
#   throwaway clusters of `drill.sandbox.postgresql: ephemeral` drills (never a server of
#   their own: no cluster is created at install time).
# - the MariaDB 11.8 client (mariadb-dump, mariadb), for MariaDB and MySQL sources;
# - restic 0.18.
# Debian 12 (bookworm) carries PostgreSQL 15 only, whose pg_dump refuses 16 and 17 servers.
FROM python:3.11-slim-trixie

# the version of drkit in this image (pyproject.toml), and the commit it was built from
ARG VERSION=0.2.0.dev0
ARG REVISION=unknown
# the user drkit runs as; `drkit k8s render` sets the same ids (runAsUser/runAsGroup/fsGroup)
ARG UID=10001
ARG GID=10001

LABEL org.opencontainers.image.title="drkit" \
      org.opencontainers.image.description="Disaster-recovery orchestrator for API backends: encrypted multi-region backups, restore with failover, measured restore drills." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-trixie"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DRKIT_HOME=/var/lib/drkit

RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/drkit.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-client-17 postgresql-17 mariadb-client restic ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Dependencies exactly as pinned (and hashed) in requirements.lock, the versions the test
# suite ran with (scripts/lock); then drkit itself, which adds none.
WORKDIR /opt/drkit
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY drkit ./drkit
RUN pip install --no-deps . && cd / && rm -rf /opt/drkit

RUN groupadd --system --gid "${GID}" drkit \
 && useradd --system --uid "${UID}" --gid "${GID}" --home-dir /var/lib/drkit --create-home \
      --shell /usr/sbin/nologin drkit \
 && mkdir -p /etc/drkit/plans
# numeric, so Kubernetes can verify runAsNonRoot
USER ${UID}:${GID}
WORKDIR /var/lib/drkit

# drkit turns SIGTERM into an orderly stop (sandboxes torn down, nothing marked complete), so
# it can run as PID 1 in a Kubernetes pod. The runbooks ship inside: `drkit runbook`.
ENTRYPOINT ["drkit"]
CMD ["--help"]
