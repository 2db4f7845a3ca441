pytest_plugins = ["gpt2course.pytest_plugin"]
