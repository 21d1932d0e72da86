"""OpenAPI operation specs, one module per area of the API (see :mod:`api.openapi`)."""
