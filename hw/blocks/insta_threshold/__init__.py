"""The INSTA-Th unit (SE = 1: INSTA-Th+)."""
