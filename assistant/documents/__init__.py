"""The user's documents: collections, ingestion of files, hybrid retrieval and grounding of answers."""
