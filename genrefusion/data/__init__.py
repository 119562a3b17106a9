from .dataset import Dataset, DatasetWriter, Problem, open_datasets
from .records import GenreVocab, Title

__all__ = ["Dataset", "DatasetWriter", "GenreVocab", "Problem", "Title", "open_datasets"]
