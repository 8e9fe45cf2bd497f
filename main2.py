"""Headless sketch search, from a checkout: `python main2.py --image_path sketch.png --gallery DIR`.

The program is sketch_search/app/find.py (installed, it is `sketch-search find`); this file is not
installed.
"""
from sketch_search.app.find import cli

if __name__ == "__main__":
    cli()
