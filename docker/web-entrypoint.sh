#!/bin/sh
# Entrypoint of the web image: check TorchServe's key file is there, then run the command.
#
# TorchServe generates its keys at start and writes them to key_file.json (mode 0600) in its
# working directory; compose and Kubernetes share that directory with this container as a
# volume. The app reads the inference key from TORCHSERVE_KEY_FILE itself, and reads it again
# whenever TorchServe refuses the key: keys expire (token_expiration_min), and the compose
# stack's torchserve-keys service renews them into the same file. Reading the key once here
# would fail every recommendation an hour after start.
set -eu

if [ -n "${TORCHSERVE_KEY_FILE:-}" ] && [ ! -r "${TORCHSERVE_KEY_FILE}" ]; then
    echo "error: TORCHSERVE_KEY_FILE=${TORCHSERVE_KEY_FILE} is not readable" >&2
    exit 1
fi

# Several gunicorn workers write their metrics into PROMETHEUS_MULTIPROC_DIR and /metrics sums
# the files; it must start empty, or a restarted container would add its old counts.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    rm -rf "${PROMETHEUS_MULTIPROC_DIR}"
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
fi

exec "$@"
