"""The PySide6 desktop window. Only this package imports Qt; it holds no business logic."""
