"""SuperGLUE tasks: one module per task (format, verbalizer, metric), behind `Task`."""
