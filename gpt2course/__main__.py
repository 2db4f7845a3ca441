import sys

from gpt2course.cli import main

sys.exit(main())
