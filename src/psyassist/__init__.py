"""psyassist: build, measure and use counseling language models.

    psyassist --help
"""

__version__ = "0.1.0"
