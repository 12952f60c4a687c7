from perf.cli import app

app()
