"""Copies that are proven before anything depends on them: the walk that follows no
planted link, the verified copy engine, the structure checks, and the journaled transfer."""
