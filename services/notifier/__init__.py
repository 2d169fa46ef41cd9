"""Notifier: delivers signed webhooks with results and failures to the CRM."""
