"""`edgewasm serve`: an Open Inference Protocol service over edgewasm guests (docs/serving.md).

Importing this package imports nothing heavy: the ASGI stack (Starlette, uvicorn, prometheus-client) is imported
by `app`/`server` only, and the client (`client.py`) needs only the standard library and numpy.
"""
