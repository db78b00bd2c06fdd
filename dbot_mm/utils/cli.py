"""How the command-line tools end on an input they refuse."""
import os.path as osp
import sys
from typing import Callable, Tuple, Type


def run_cli(main: Callable[[], object], script: str,
            errors: Tuple[Type[BaseException], ...]) -> None:
    """``main()``; one of ``errors`` (a config or input the tool refuses,
    not a crash) ends ``script`` with one line instead of a traceback."""
    try:
        main()
    except errors as e:
        sys.exit(f'{osp.basename(script)}: error: {e}')
