"""Buffer to primary storage, and back out of the buffer: the archive worker, its
compressed copies, the purge of verified-on-primary copies, and the re-hash check."""
