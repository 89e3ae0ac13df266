"""The control plane's own state: who may do what (operator and viewer tokens, signed console links), the
SQLite store of sessions and tokens, and the audit trail."""
