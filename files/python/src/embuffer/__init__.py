"""embuffer: the buffer (ingestion) server for cryo-EM facilities."""

__version__ = "0.2.0"
