"""Delivery mechanics: fan-out, the per-turn writer, the timer wheel, keepalive."""
