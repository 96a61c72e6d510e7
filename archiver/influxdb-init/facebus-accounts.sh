#!/bin/bash
# facebus: InfluxDB 2 accounts for the archiver and Grafana, so that neither holds the operator token.
#
# docker-compose.yml mounts this file in /docker-entrypoint-initdb.d/ of the influxdb image, whose entrypoint runs it
# once, at the first start (empty volume), right after its own setup: the influx CLI is then logged in as the
# operator (INFLUX_HOST and the CLI configuration are set) and DOCKER_INFLUXDB_INIT_BUCKET(_ID) name the bucket.
# The file must stay executable (run-parts skips the others).
#
#   archiver  WRITE on the bucket only  (v1-compatible /write with user/password: FACEBUS_INFLUX_API=v1)
#   grafana   READ on the bucket only   (InfluxQL /query with user/password: the provisioned datasource)
#
# InfluxDB 2 chooses API tokens itself, so these are v1-compatible accounts, whose passwords the caller sets:
# ARCHIVER_INFLUX_PASSWORD and GRAFANA_INFLUX_PASSWORD from .env. The script does not run again on later starts; to
# change a password afterwards, set it in .env and in InfluxDB:
#   docker compose exec influxdb influx v1 auth set-password --username archiver --password '<new password>'
#   docker compose up -d archiver
set -euo pipefail

: "${ARCHIVER_INFLUX_PASSWORD:?ARCHIVER_INFLUX_PASSWORD is not set}"
: "${GRAFANA_INFLUX_PASSWORD:?GRAFANA_INFLUX_PASSWORD is not set}"
bucket="${DOCKER_INFLUXDB_INIT_BUCKET:?DOCKER_INFLUXDB_INIT_BUCKET is not set}"

bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}"
if [ -z "$bucket_id" ]; then
    bucket_id="$(influx bucket list --name "$bucket" --hide-headers | cut -f 1)"
fi
if [ -z "$bucket_id" ]; then
    echo "facebus-accounts: bucket $bucket not found" >&2
    exit 1
fi

influx v1 auth create --username archiver --password "$ARCHIVER_INFLUX_PASSWORD" --write-bucket "$bucket_id" \
    --description "facebus archiver: write-only on $bucket" >/dev/null
influx v1 auth create --username grafana --password "$GRAFANA_INFLUX_PASSWORD" --read-bucket "$bucket_id" \
    --description "facebus Grafana: read-only on $bucket" >/dev/null
echo "facebus-accounts: created the v1 accounts archiver (write) and grafana (read) on bucket $bucket ($bucket_id)"
