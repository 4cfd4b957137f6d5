"""One reader per file format; each returns plain records and raises DataError naming file and line."""
