"""The back office: accounts and users, connection settings, the catalog of scripts and
tables, calls (queries, commands, reports, exports) and webhook deliveries. The JSON API
and the web app call the same functions here."""
