from lanes.cli import run

run()
