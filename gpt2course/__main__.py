import sys

if sys.version_info < (3, 11):  # before any import that needs 3.11 (tomllib), so this is what is said
    from gpt2course.course import make  # course.py imports tomllib only when the manifest is read

    sys.exit(f"This course needs Python 3.11 or newer; this is Python {sys.version.split()[0]} "
             f"({sys.executable}). Install Python 3.11+, then: {make('install')} PYTHON=python3.11")

from gpt2course.cli import main  # noqa: E402

sys.exit(main())
