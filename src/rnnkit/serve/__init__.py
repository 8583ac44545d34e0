"""The playground (``rnnkit serve``) and its static twin (``rnnkit visualize``).

``app`` needs the ``serve`` extra (FastAPI, uvicorn); ``units`` and ``visualize`` need only
torch (and matplotlib for the PNG), so importing this package imports neither.
"""
