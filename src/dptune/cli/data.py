"""`dptune data ...`: fetch the raw SuperGLUE files and draw few-shot samples."""

import typer

app = typer.Typer(help="Fetch SuperGLUE data and draw few-shot samples.", no_args_is_help=True)
