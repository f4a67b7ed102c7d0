"""Camera share to buffer: find settled movies, match them, copy, verify, remove the
camera copy; quarantine what cannot be placed."""
