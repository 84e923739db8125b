#!/bin/sh
# Entrypoint of the web image: pick up TorchServe's inference key, then run the command.
#
# TorchServe generates its keys at start and writes them to key_file.json (mode 0600) in its
# working directory; compose and Kubernetes share that directory with this container as a
# volume. An explicit TORCHSERVE_TOKEN always wins.
set -eu

if [ -z "${TORCHSERVE_TOKEN:-}" ] && [ -n "${TORCHSERVE_KEY_FILE:-}" ]; then
    if [ ! -r "${TORCHSERVE_KEY_FILE}" ]; then
        echo "error: TORCHSERVE_KEY_FILE=${TORCHSERVE_KEY_FILE} is not readable" >&2
        exit 1
    fi
    TORCHSERVE_TOKEN=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["inference"]["key"])' "${TORCHSERVE_KEY_FILE}")
    export TORCHSERVE_TOKEN
fi

# Several gunicorn workers write their metrics into PROMETHEUS_MULTIPROC_DIR and /metrics sums
# the files; it must start empty, or a restarted container would add its old counts.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "${PROMETHEUS_MULTIPROC_DIR}"
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
fi

exec "$@"
