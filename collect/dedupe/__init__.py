"""Dedupe: respondent keys, the one-vote decision, photocopy detection."""
