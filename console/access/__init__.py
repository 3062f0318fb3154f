"""Collections and access: who may find which documents (visibility), moving documents, and the audit trail."""
