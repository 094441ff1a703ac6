"""HTTP API of contract v1 (``/work/shared/API.md``): see :func:`service.api.app.create_app`."""
