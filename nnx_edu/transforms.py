__all__: list[str] = []  # placeholder
