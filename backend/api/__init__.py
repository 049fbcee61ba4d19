"""REST APIs of the live stack (FastAPI app factories)."""
