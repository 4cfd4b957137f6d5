"""Task data: preparing local copies (`xstilts data prepare/check`), loading examples and caching features."""
