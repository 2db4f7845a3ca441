"""The course's GPT-2 as a MAX custom architecture.

``max serve --custom-architectures ROOT:gpt2course.serve.arch --model FOLDER ...``:
MAX appends ROOT (the course folder) to ``sys.path``, imports this package, and
registers every entry of ``ARCHITECTURES``. An entry's ``name`` is matched against the
``architectures[0]`` of the checkpoint's config.json: "GPT2LMHeadModel". The model
worker MAX spawns gets the same ``sys.path``, so ``solutions`` and ``gpt2course``
import there too; nothing reads the environment.
"""

from .arch import gpt2_course_arch

ARCHITECTURES = [gpt2_course_arch]

__all__ = ["ARCHITECTURES", "gpt2_course_arch"]
