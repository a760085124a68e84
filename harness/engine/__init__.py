"""The propagation engine and its named protocols: pure tensor math, no task, method, CLI or file I/O."""
