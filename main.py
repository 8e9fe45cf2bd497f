"""Draw in the air, find the photo, from a checkout: `python main.py [--source 0|VIDEO] [--gallery DIR] ...`

The program is sketch_search/app/draw.py (installed, it is `sketch-search draw`); this file is not
installed.
"""
from sketch_search.app.draw import cli

if __name__ == "__main__":
    cli()
