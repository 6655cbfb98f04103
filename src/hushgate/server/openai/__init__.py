"""The OpenAI-compatible audio API (``/v1/audio/*``, ``/v1/models``) over the gateway's engines."""
