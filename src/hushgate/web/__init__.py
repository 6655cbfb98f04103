"""Static pages served by the gateway (demo, overlay, JS SDK)."""
