"""`python -m gpt2course serve`: the course's GPT-2 behind MAX's OpenAI-compatible server.

* ``arch/``: the custom architecture ``max serve`` loads (``--custom-architectures
  ROOT:gpt2course.serve.arch``): registration, weight adapter, pipeline model.
* ``folder.py``: the servable folder (the checkpoint, GPT-2's tokenizer files and the
  course's serving settings) written under the course cache; the user's folder is never touched.
* ``command.py``: the command: starts ``max serve`` in its own process group, waits, stops it.
"""
