"""genrefusion: multi-label movie/TV genre prediction from poster + plot."""
from .version import __version__

from .data import Dataset, GenreVocab, Title
from .errors import GenreFusionError


def __getattr__(name):
    # GenreClassifier pulls in torch; import it lazily so `genrefusion validate` starts fast.
    if name == "GenreClassifier":
        from .predict import GenreClassifier

        return GenreClassifier
    raise AttributeError(name)


__all__ = ["Dataset", "GenreVocab", "Title", "GenreFusionError", "GenreClassifier"]
