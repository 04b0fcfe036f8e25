#!/usr/bin/env bash
# Installs (if needed) and starts moto's S3-compatible server on 127.0.0.1 in the background,
# then waits until it answers. The luma-files S3 conformance test reads
# LUMA_TEST_S3_ENDPOINT; .ci/run should do:
#
#   bash .ci/start-s3.sh
#   export LUMA_TEST_S3_ENDPOINT=http://127.0.0.1:${LUMA_S3_PORT:-9000}
#
# (or `source .ci/start-s3.sh`, which exports the variable itself).
# Stop it with: kill "$(cat "${LUMA_S3_PIDFILE:-/tmp/luma-moto-s3.pid}")"
set -euo pipefail

port="${LUMA_S3_PORT:-9000}"
pidfile="${LUMA_S3_PIDFILE:-/tmp/luma-moto-s3.pid}"
log="${LUMA_S3_LOG:-/tmp/luma-moto-s3.log}"
url="http://127.0.0.1:${port}"

answers() { curl -fsS -o /dev/null "${url}/" 2>/dev/null; }

if answers; then
    echo "start-s3: a server already answers at ${url}"
else
    if ! command -v moto_server >/dev/null 2>&1; then
        echo "start-s3: installing moto[server] from PyPI"
        python3 -m pip install --quiet 'moto[server]>=5,<6'
        hash -r
    fi
    echo "start-s3: starting moto_server on ${url} (log ${log})"
    nohup moto_server -H 127.0.0.1 -p "${port}" >"${log}" 2>&1 &
    echo $! >"${pidfile}"
    for _ in $(seq 1 120); do
        if answers; then break; fi
        if ! kill -0 "$(cat "${pidfile}")" 2>/dev/null; then
            echo "start-s3: moto_server exited; log follows" >&2
            cat "${log}" >&2
            exit 1
        fi
        sleep 0.5
    done
    if ! answers; then
        echo "start-s3: moto_server did not answer at ${url} within 60 s" >&2
        cat "${log}" >&2
        exit 1
    fi
    echo "start-s3: moto_server answers at ${url} (pid $(cat "${pidfile}"))"
fi
export LUMA_TEST_S3_ENDPOINT="${url}"
