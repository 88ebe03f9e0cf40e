"""The proxy trainer (torch): configs, the model, token data, training loop, checkpoints."""
