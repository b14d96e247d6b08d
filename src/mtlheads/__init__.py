"""mtlheads: the library behind the book on multi-task transformer heads.

Layer and head indices are 0-based everywhere in the code.
"""

__version__ = "0.1.0"
