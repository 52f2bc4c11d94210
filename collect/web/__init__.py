"""The Starlette app: glue between HTTP, the channel adapters and ingest(). See `app.create_app`."""
