"""Zero-downtime releases of a new model version on a running model server: ``state`` (the small
file the CLI and the web app share), ``torchserve`` and ``triton`` (the steps on each server) and
``commands`` (``movierec release ...``)."""
