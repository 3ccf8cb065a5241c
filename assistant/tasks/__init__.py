"""The single-purpose tasks: translation, language identification, sentiment (and its student), suggestions."""
