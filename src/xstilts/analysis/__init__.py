"""Reading a run back into a report: the answer (headline), the sections in their registered order, tables, plots,
and their markdown and HTML renderings; it never trains or evaluates."""
