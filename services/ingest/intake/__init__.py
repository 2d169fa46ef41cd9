"""The CRM intake: the submission contract, accepting a call once, its task's status."""
