"""The CRM ingest gateway: accepts calls, reports tasks, serves the admin API."""
