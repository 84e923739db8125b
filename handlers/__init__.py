"""TorchServe handlers (SAE, RBM, hybrid) and the recommendation logic they share."""
