__all__: list[str] = []  # placeholder, filled in by its chapter
