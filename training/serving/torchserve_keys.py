"""Keeps TorchServe's inference key valid for clients that only read ``key_file.json``.

TorchServe's keys expire (``token_expiration_min``, 60 minutes in the production config) and
only a call to the management API with the API key (which never expires) replaces one; TorchServe
then rewrites the key file. The web app reads the file again when TorchServe refuses its key
(``torchserve_client.InferenceKey``), but in the compose stack it cannot reach the management
API (loopback inside TorchServe's container), so this renewer runs in TorchServe's network
namespace and renews the inference key well before it expires:

    python -m training.serving.torchserve_keys --key-file /run/torchserve-keys/key_file.json \
        --management-url http://127.0.0.1:8081 --every-s 1800
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from training.config import get_logger
from training.serving.torchserve_client import TorchServeClient, TorchServeError, read_key_file

log = get_logger("serving")

DEFAULT_EVERY_S = 1800.0  # half the production expiry: a renewal may fail once and still be in time
RETRY_S = 10.0  # after a failed renewal (TorchServe restarting)
WRITE_TIMEOUT_S = 10.0
POLL_S = 0.05


def renew_inference_key(
    key_file: Path, management_url: str, timeout_s: float = WRITE_TIMEOUT_S
) -> str:
    """One renewal; returns once TorchServe has written the new inference key into
    ``key_file`` (it answers before it rewrites the file)."""
    old = read_key_file(key_file)
    client = TorchServeClient("", management_url)
    try:
        client.renew_key(old["api"], "inference")
    finally:
        client.close()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            key = read_key_file(key_file)["inference"]
            if key != old["inference"]:
                return key
        except (ValueError, KeyError):  # half written
            pass
        if time.monotonic() >= deadline:
            raise TorchServeError(f"{key_file}: no new inference key after {timeout_s:g}s")
        time.sleep(POLL_S)


def renew_forever(key_file: Path, management_url: str, every_s: float) -> None:
    while True:
        try:
            renew_inference_key(key_file, management_url)
            log.info("renewed TorchServe's inference key in %s", key_file)
            time.sleep(every_s)
        except (TorchServeError, OSError, KeyError, ValueError) as exc:
            log.warning("could not renew TorchServe's inference key: %s; retrying", exc)
            time.sleep(RETRY_S)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--management-url", required=True)
    parser.add_argument("--every-s", type=float, default=DEFAULT_EVERY_S)
    args = parser.parse_args(argv)
    renew_forever(args.key_file, args.management_url, args.every_s)


if __name__ == "__main__":
    main()
