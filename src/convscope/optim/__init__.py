"""Optimizers with torch.optim update rules."""
