"""Modules with torch.nn names, arguments and state_dict keys."""
