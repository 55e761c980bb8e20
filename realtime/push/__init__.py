"""What happens to a push above the broker: the router, offline queues, the channel service."""
