"""What embuffer reads from and writes to Leginon: the leginondb connection and its
credentials, the image a movie belongs to, buffer placement, gain/dark references."""
