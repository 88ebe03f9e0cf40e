"""Reports: HTML, JSON and Markdown views of fits and predictions."""
