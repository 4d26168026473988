"""Example flows (served with ``flow.serve``, no work pool) and an example policy."""
