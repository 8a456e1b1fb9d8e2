"""fer_zoo: dynamic facial expression recognition from cached per-frame features.

Kept import-light on purpose: importing the package (or the store or the model) never imports MediaPipe or openpifpaf.
"""

__version__ = "0.1.0"
