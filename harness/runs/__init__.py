"""One evaluation run: the runner that wires method, task and engine together, and the record it writes."""
