"""Checks of what the project ships: the wheel and sdist (``make package-test``) and the book's PDF
(``make pdf-test``). Kept outside ``tests/`` because they need a build (a PDF, or minutes of
packaging), so plain ``pytest tests`` never collects them; ``make test`` runs both."""
