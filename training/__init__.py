"""movierec: MovieLens recommendations with a Stacked AutoEncoder and an RBM."""

__version__ = "0.1.0"
