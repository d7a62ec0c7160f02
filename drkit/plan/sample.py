"""The annotated starter plan written by `drkit plan init`."""

SAMPLE_PLAN = """\
# drkit plan: what to protect, where copies go, and how recovery is proven.
# Reference: docs/plan-reference.md   Editor schema: drkit plan schema > drkit-plan.schema.json
version: 1
name: my-api                      # lower-case; prefixes everything drkit stores
description: Database and config of my API.
objectives:
  rpo: 1h                         # the newest complete copy must never be older than this
  rto: 30m                        # a drill must restore and verify within this
sources:
  - name: main-db
    type: postgresql              # or mysql, sqlite, files
    url: postgresql://drkit@db.internal:5432/app
    password: env:APP_DB_PASSWORD # secrets are references only: env:NAME or file:/path
  - name: config
    type: files
    paths: [/etc/my-api]
    exclude: ["*.swp"]
keys:                             # each snapshot's data key is wrapped for every key
  - name: primary
    type: keyfile                 # create it with: drkit keys generate /etc/drkit/primary.key
    path: /etc/drkit/primary.key
  - name: break-glass
    type: passphrase
    passphrase: file:/etc/drkit/break-glass.txt
stores:
  - name: local
    type: filesystem
    path: /var/backups/drkit
    region: on-prem
  - name: s3-main
    type: s3
    bucket: my-api-dr
    region: eu-west-1
copies:
  min_stores: 2                   # a snapshot counts once this many stores hold it
  min_regions: 2
schedule:                         # used by: drkit run --due PLAN
  backup: "0 * * * *"
  drill: "30 3 * * 1"
retention:
  keep_last: 24
  keep_daily: 7
  keep_weekly: 4
drill:
  sandbox:
    postgresql: ephemeral         # a throwaway local PostgreSQL cluster
  checks:
    - type: fingerprint           # row counts and hashes equal those taken at backup
"""
