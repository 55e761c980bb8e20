"""The pure core: values and rules with no I/O (registry, uids, channel rules and wire format)."""
