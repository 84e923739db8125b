"""Starting, stopping and calling the model servers (TorchServe, Triton) and the web app."""
