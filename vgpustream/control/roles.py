"""The roles a token grants, by name: what auth grants, signed console links carry and the API schemas list."""

ROLES = ("view", "control")
"""The roles a viewer token may have."""
OPERATOR = "operator"
"""The role of a request made (or a viewer connected) with an operator token."""
GRANTED_ROLES = (*ROLES, OPERATOR)
