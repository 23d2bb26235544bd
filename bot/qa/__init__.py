"""Answers about the agreement by keyword matching on jieba-segmented text.

``QA.build(version)`` reads ``data/qa/`` (lexicon, example questions, settings) and
indexes the version's clauses; ``QA.answer(question)`` quotes the matching clause, or
says the agreement does not cover the question. Modules:

- :mod:`bot.qa.data`: the data files and the override rule;
- :mod:`bot.qa.analyzer`: folding, jieba (private tokenizer, cached), stop words, synonyms;
- :mod:`bot.qa.units`: the clauses and their sentences; examples attached by anchor;
- :mod:`bot.qa.index`: BM25 over clause text, section and examples, normalised scores;
- :mod:`bot.qa.quote`: the one or two sentences to quote;
- :mod:`bot.qa.engine`: ``QA`` and ``Answer``;
- :mod:`bot.qa.evaluate`: accuracy and abstention figures on a question file.
"""

from bot.qa.data import DEFAULT_DATA_DIR, QADataError
from bot.qa.engine import QA, Answer
from bot.qa.evaluate import QuestionFileError, evaluate, read_questions

__all__ = ["DEFAULT_DATA_DIR", "QA", "Answer", "QADataError", "QuestionFileError", "evaluate", "read_questions"]
