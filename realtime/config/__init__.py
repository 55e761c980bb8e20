"""Configuration: options, plugin options, plugin discovery."""
