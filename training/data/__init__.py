"""Data: MovieLens ingestion (download or mirror, verified), parsing, preprocessing."""
