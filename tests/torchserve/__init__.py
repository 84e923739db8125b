"""Tests of the TorchServe handlers, archives and a real TorchServe."""
