# drkit production image: slim Python, non-root user, drkit with restic and the PostgreSQL and
# MariaDB clients. Build where a Docker engine runs (not on the CI machine, which has none):
#   docker build -t drkit:0.1.0 .
# The install steps mirror scripts/setup (same Debian packages, same pip install).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DRKIT_HOME=/var/lib/drkit

# postgresql brings initdb/pg_ctl for `postgresql: ephemeral` drill sandboxes; the server is
# never started except as a drill's throwaway cluster.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      restic postgresql-client postgresql mariadb-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/drkit
COPY pyproject.toml README.md ./
COPY drkit ./drkit
RUN pip install . && rm -rf /opt/drkit/build

RUN useradd --system --uid 10001 --home-dir /var/lib/drkit --create-home drkit \
 && mkdir -p /etc/drkit/plans && chown drkit:drkit /var/lib/drkit
USER drkit
WORKDIR /var/lib/drkit

# drkit turns SIGTERM into an orderly stop (sandboxes torn down, nothing marked complete), so
# it can run as PID 1 in a Kubernetes pod.
ENTRYPOINT ["drkit"]
CMD ["--help"]
