"""Data: the synthetic reasoning corpus, teachers, the augmentation cache and seqio tasks.

Light to import (no TensorFlow): the seqio side lives in `scaling.data.pipeline` and
`scaling.data.vocabulary`, imported where batches are needed.
"""

from scaling.data.corpus import Document, HardSpan, QAProblem, extract_answer, make_document, qa_problems
from scaling.data.formats import THINK_CLOSE, THINK_OPEN

__all__ = ["Document", "HardSpan", "QAProblem", "THINK_CLOSE", "THINK_OPEN", "extract_answer",
           "make_document", "qa_problems"]
