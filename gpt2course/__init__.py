"""The course's tooling. Learners never need to read it: the step files and the book are theirs.

    course.py     the facts: steps (course.toml), folders, defaults, command spelling, pins
    skeleton.py   the TODO markers: skeletons made from solutions, open TODOs found in a file
    errors.py     CheckFailure, the one error a learner reads
    device.py     the MAX device a command was asked for (--device cpu|gpu)
    hf/           Hugging Face's side: checkpoints, weights, reference activations, tokenizer
    check/        the learner's check: the command, the pytest plugin, comparisons and traps,
                  running a module on MAX, loading learner code, the verdict and its cache
    learn/        the learner's loop: progress, hint, reset, watch, doctor (standard library only)
    grade/        grading a class: submissions, workspaces, the sandbox, verdicts, reports
    run/          the finished model: the gpt2 command, the engine and its decode graph, generation
    serve/        the model behind `max serve`: the serve command, the servable folder, and arch/,
                  the custom architecture MAX loads (registration, weight adapter, pipeline model)
    cli.py        `python -m gpt2course COMMAND`: lists the commands of the subpackages
"""
