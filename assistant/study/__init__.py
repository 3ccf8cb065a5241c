"""Study: flashcards and quizzes from the user's own documents, reviewed on an FSRS schedule.

- :mod:`assistant.documents.text` (shared with the Documents page and the chat's sources): the
  documents' sentences as people read them (markup removed);
- :mod:`assistant.study.cards`: which sentences are worth learning and the cards made from them
  (cloze, question and answer, multiple choice), each checked against its source sentence;
- :mod:`assistant.study.answers`: whether a typed answer is right (exact, near, or by meaning).
"""
