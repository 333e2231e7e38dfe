"""The policy: the base model and its adapters, chat templates, sampling, versions and hot-swap."""
