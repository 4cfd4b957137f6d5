"""Task data: preparing local copies (`xstilts data prepare/check`), loading examples, caching features, and sampling a few of each file for a rehearsal."""
